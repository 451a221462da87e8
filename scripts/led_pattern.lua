-- LED pattern: blink an LED (or drive a relay) through a pattern of on and off steps.
--
-- A Jotunheim script in Lua (Linux boards and the simulator, where lupa runs it). Register
-- it as script "led_pattern" with language "lua" (it becomes tool Script_led_pattern) and
-- these parameters:
--
--     pin      int     GPIO of the LED                   default 2
--     pattern  string  "1" on, "0" off, one per step     default "1010110"
--     step_ms  int     how long each step lasts          default 100
--     times    int     how often to play the pattern     default 1
--
-- The pin is left as the last step sets it. It returns the number of steps played, and
-- keeps the last pattern played in Hel under "last". ctx's functions are called with a
-- dot (ctx.fenrir.pin_write(...)), never a colon.

function run(ctx, params)
  local steps = 0
  for _ = 1, params.times do
    for i = 1, #params.pattern do
      local step = params.pattern:sub(i, i)
      if step ~= "0" and step ~= "1" then
        error("pattern may hold only 0 and 1, not " .. step)
      end
      ctx.fenrir.pin_write(params.pin, step == "1")
      ctx.sleep_ms(params.step_ms)
      steps = steps + 1
    end
  end
  ctx.hel.put("last", {pattern = params.pattern, steps = steps})
  return steps
end
