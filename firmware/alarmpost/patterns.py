"""What the strobe, siren and status LED show in each state of the post.

Blink patterns are on/off durations in ms starting with "on"; a one-step
pattern holds its level; ``()`` is off.  Each state looks and sounds different,
so a person at the gate, a technician and the patrol can tell them apart:

============  ======================  ======================  =====================
state         strobe                  siren                   status LED
============  ======================  ======================  =====================
alarm         2 flashes/s             wail (sweep)            steady on
acknowledged  double flash every 1 s  beep 0.5 s on/off       steady on
silenced      double flash every 1 s  off                     steady on
test          1 flash/s, long         60 ms chirp every 1 s   4 blinks/s
trouble       one short flash / 10 s  off                     fast blink 5/s
healthy idle  off                     off                     short blink every 2 s
============  ======================  ======================  =====================

After ``siren_cutoff_s`` the siren stops while the strobe goes on until reset.
"""

OFF = ()
STEADY = (1,)

STROBE_ALARM = (120, 380)
STROBE_ACKNOWLEDGED = (120, 120, 120, 640)
STROBE_TEST = (500, 500)
STROBE_TROUBLE = (60, 9940)

SIREN_ALARM = ("sweep",)
SIREN_ACKNOWLEDGED = ("beep", 500, 500)
SIREN_TEST = ("beep", 60, 940)

LED_HEALTHY = (50, 1950)
LED_TROUBLE = (100, 100)
LED_TEST = (125, 125)
LED_ALARM = STEADY

IDLE = "idle"
ALARM = "alarm"
ACKNOWLEDGED = "acknowledged"
SILENCED = "silenced"
LATCHED = (ALARM, ACKNOWLEDGED, SILENCED)


def choose(state, siren_allowed, testing, trouble):
    """(strobe, siren, LED) patterns for the post's situation."""
    if state in LATCHED:
        strobe = STROBE_ALARM if state == ALARM else STROBE_ACKNOWLEDGED
        siren = OFF
        if siren_allowed and state == ALARM:
            siren = SIREN_ALARM
        elif siren_allowed and state == ACKNOWLEDGED:
            siren = SIREN_ACKNOWLEDGED
        return strobe, siren, LED_ALARM
    if testing:
        return STROBE_TEST, SIREN_TEST, LED_TEST
    if trouble:
        return STROBE_TROUBLE, OFF, LED_TROUBLE
    return OFF, OFF, LED_HEALTHY
