"""DeskPulse host tools: simulator, flashing, sync and reporting for the feedback kiosk."""
