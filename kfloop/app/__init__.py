"""The roof: CLI, local loop driver, replay, loop report, compile and submit. Nothing below imports it."""
