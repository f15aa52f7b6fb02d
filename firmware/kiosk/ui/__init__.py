# What the customer sees: fonts, face icons, layout and the screens, drawn with framebuf
# into a panel driver's frame buffer (see kiosk.drivers), and the refresh task.
#
#   screens.Screens(fb, width, height, ink, paper, board, fonts_dir, request)
#       show(kind, title, options=(), note="")   the flow's screen interface
#                                                (kind: kiosk.screen.VIEW_*)
#       target_at(x, y) -> option index or -1     touch hit test of the current view
#     Drawing happens inside show(); then request() asks the refresh task for an update.
#   display.Display(driver, ...)                  the refresh task (an asyncio task)
