"""Board entry point: run the alarm post.  Everything lives in the alarmpost package."""

import alarmpost.app

alarmpost.app.run()
