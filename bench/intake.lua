-- wrk script for bench/intake_bench.py: POST bodies with random points inside the bench town.
--   wrk ... -s bench/intake.lua http://127.0.0.1:PORT -- MODE TOKENS_FILE X0 Y0 X1 Y1 RUN_TAG IDS
-- MODE "wangge": POST /incidents with a bearer token taken in turn from TOKENS_FILE (one per line)
--               and, when IDS is "ids", a unique external_id per request;
-- MODE "minimal": POST /locate {"lon", "lat"} (bench/minimal_app.py).

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   mode, tokens_file = args[1], args[2]
   x0, y0, x1, y1 = tonumber(args[3]), tonumber(args[4]), tonumber(args[5]), tonumber(args[6])
   tag, ids = args[7], args[8]
   tokens = {}
   if tokens_file ~= "-" then
      for line in io.lines(tokens_file) do
         if #line > 0 then table.insert(tokens, line) end
      end
   end
   math.randomseed(tid * 7919 + (tonumber(tag:match("%d+")) or 17))
end

function request()
   counter = counter + 1
   local x = x0 + math.random() * (x1 - x0)
   local y = y0 + math.random() * (y1 - y0)
   if mode == "minimal" then
      local body = string.format('{"lon": %.7f, "lat": %.7f}', x, y)
      return wrk.format("POST", "/locate", {["Content-Type"] = "application/json"}, body)
   end
   local ext = ""
   if ids == "ids" then
      ext = string.format(', "external_id": "wrk-%s-%d-%d"', tag, tid, counter)
   end
   local body = string.format(
      '{"category": "environment", "description": "wrk intake %d-%d", ' ..
      '"occurred_at": "2024-06-01T08:00:00+08:00", "lon": %.7f, "lat": %.7f%s}', tid, counter, x, y, ext)
   local headers = {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer " .. tokens[(counter + tid) % #tokens + 1]}
   return wrk.format("POST", "/incidents", headers, body)
end
