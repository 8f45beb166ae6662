# Freezes the alarm post into a MicroPython firmware image, so its bytecode runs from
# flash instead of the heap (needed on an ESP32 without PSRAM).  From a MicroPython
# source tree:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/firmware/manifest.py
# then copy main.py, board.json and config.json to the board's filesystem as usual.
include("$(PORT_DIR)/boards/manifest.py")
package("alarmpost")
