# The watchdog is fed while every watched task lives, and never again once one dies.
import asyncio

from alarmpost.supervisor import Supervisor


class CountingWdt:
    feeds = 0

    def feed(self):
        self.feeds += 1


async def main():
    wdt = CountingWdt()
    supervisor = Supervisor(wdt, timeout_ms=400)
    alive = [True]
    supervisor.watch("button", lambda: not alive[0])
    task = asyncio.create_task(supervisor.run())
    for _ in range(5):
        supervisor.main_loop_turned()
        await asyncio.sleep_ms(100)
    fed = wdt.feeds
    assert fed >= 4, fed
    alive[0] = False
    for _ in range(5):
        supervisor.main_loop_turned()
        await asyncio.sleep_ms(100)
    assert task.done()  # it stopped feeding for good
    assert supervisor.failed == "button"
    assert wdt.feeds <= fed + 1, (fed, wdt.feeds)


asyncio.run(main())
print("OK")
