# Start the Jotunheim agent (firmware/lib/jotunheim). Ctrl-C at the console stops it.
import jotunheim

jotunheim.run()
