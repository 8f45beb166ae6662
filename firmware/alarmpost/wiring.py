"""Builds the post's devices from the checked board file and config.

Loaded at boot and dropped after it.  A pin that is missing leaves a stand-in
(outputs) or no device (inputs); a pin the port refuses is reported as a config
trouble, and the rest of the post works on.

>>> wiring.outputs(post); wiring.inputs(post); wiring.link(post)
"""

import machine

from alarmpost.inputs import Button, SenseInput, Switch
from alarmpost.link import Link
from alarmpost.outputs import Blinker, DigitalOutput, NullOutput, Siren, Strobe
from alarmpost.supply import Supply


def _pin(post, device):
    pin = post.board["pins.%s.pin" % device]
    if pin is None:
        return None
    return pin, post.board.get("pins.%s.active" % device) == "low"


def _device(post, device, build, fallback):
    wiring = _pin(post, device)
    if wiring is None:
        return fallback
    try:
        return build(*wiring)
    except (ValueError, OSError) as exc:
        post.setting_errors.append("pins.%s: %s" % (device, exc))
        return fallback


def outputs(post):
    """Strobe, siren, status LED and alarm line, all off; a missing or bad pin gives a stand-in."""
    board, config = post.board, post.config
    post.strobe = _device(post, "strobe", lambda p, low: Strobe(p, board["strobe_pwm_hz"], low), NullOutput())
    post.siren = _device(post, "siren", lambda p, low: Siren(p, config["siren_low_hz"], low), NullOutput())
    post.led = _device(post, "status_led", Blinker, NullOutput())
    post.alarm_line = _device(post, "alarm_line", DigitalOutput, NullOutput())
    post.strobe.duty_pct = config["strobe_duty_pct"]
    for name in ("low_hz", "high_hz", "sweep_ms", "step_ms", "duty_pct"):
        setattr(post.siren, name, config["siren_" + name])


def _input(post, device, cls, **callbacks):
    wiring = _pin(post, device)
    if wiring is None:
        return None
    pull = post.board["pins.%s.pull" % device]
    return _device(post, device, lambda p, low: cls(p, low, pull, **callbacks), None)


def inputs(post):
    """Button, key switch, tamper and supply monitor, calling the post's handlers."""
    config = post.config
    post.button = _input(
        post,
        "button",
        Button,
        on_press=post._pressed,
        on_long_press=post.alarm.long_press,
        on_stuck=post._stuck,
        on_release=post._released,
    )
    if post.button is not None:
        for name in ("glitch_ms", "debounce_ms", "long_press_ms", "stuck_ms"):
            setattr(post.button, name, config[name])
    post.key_switch = _input(post, "key_switch", Switch, on_change=post._key_turned)
    post.tamper = _input(post, "tamper", Switch, on_change=post._tampered)
    for switch in (post.key_switch, post.tamper):
        if switch is not None:
            switch.debounce_ms = config["switch_debounce_ms"]
    if not isinstance(post.siren, NullOutput):  # a sense input without a siren has nothing to check
        post.siren.sense = _input(post, "siren_sense", SenseInput)
    post.supply = _device(post, "supply_adc", lambda p, low: _supply(post, p, low), None)


def _supply(post, pin, active_low):
    config = post.config
    supply = Supply(
        machine.ADC(machine.Pin(pin)),
        post.board["supply_full_scale_v"],
        config["ac_loss_v"],
        config["low_battery_v"],
        post._supply_changed,
    )
    supply.poll_ms = config["supply_poll_ms"]
    supply.confirm_ms = config["supply_confirm_ms"]
    supply.hysteresis_v = config["supply_hysteresis_v"]
    return supply


def link(post):
    """The serial link to the Pi, when the board has a UART."""
    board = post.board
    if board["uart.tx"] is None or board["uart.rx"] is None:
        return
    try:
        uart = machine.UART(
            board["uart.id"],
            baudrate=board["uart.baud"],
            tx=machine.Pin(board["uart.tx"]),
            rx=machine.Pin(board["uart.rx"]),
        )
    except (ValueError, OSError) as exc:
        post.setting_errors.append("uart: %s" % exc)
        return
    post.link = Link(uart, post)
    post.link.heartbeat_ms = post.config["link_heartbeat_ms"]
    post.link.timeout_ms = post.config["link_timeout_ms"]
    post.listeners.append(post.link.event_added)
