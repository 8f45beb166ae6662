"""The alarm post firmware.  ``app.run()`` starts it; see docs/alarm-core.md."""

import sys


def unload(module):
    """Drop a submodule used only now and then, giving its heap back."""
    sys.modules.pop("alarmpost." + module, None)
    package = sys.modules["alarmpost"]
    if module in package.__dict__:
        delattr(package, module)
