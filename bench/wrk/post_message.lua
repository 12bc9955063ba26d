-- wrk script: POST a chat message the way a client does, on keep-alive, and
-- prove at the end that every response was a 202.
--
-- Environment:
--   CHAT_PATH    path to post to, e.g. /chats/123/messages  (required)
--   TOKEN        bearer token for the Authorization header  (required)
--   WRK_COUNTER  if 1, each request's content carries a per-thread counter
--                ("hello from wrk 17"). Off by default: building a request
--                per call costs the single wrk thread throughput, and the
--                anchor (noop-server) is fast enough for that to show.
--
-- done() prints, after wrk's own report, lines that scripts/bench-wrk parses:
--   status_202: N
--   non_2xx: N              (responses with a status outside 200-299)
--   status_other: N         (responses with a status other than 202)
--   status_breakdown: 202=N[,404=N...]
--   socket_errors: connect=N read=N write=N timeout=N
--   all_accepted: yes|no    (yes: every response 202, no socket errors)
-- A response() callback makes wrk hand over headers and body, which costs a
-- little; natter and the anchor both pay it, so the ratio stays fair.

local chat_path = os.getenv("CHAT_PATH")
local token = os.getenv("TOKEN")
local use_counter = os.getenv("WRK_COUNTER") == "1"

if chat_path == nil or chat_path == "" or token == nil or token == "" then
   io.stderr:write("post_message.lua: set CHAT_PATH and TOKEN\n")
   os.exit(2)
end

wrk.method = "POST"
wrk.path = chat_path
wrk.body = '{"content":"hello from wrk"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Connection"] = "keep-alive"

-- Runs in the setup/done environment: keep every thread so done() can read
-- the counters that live in each thread's own Lua state.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

-- Per-thread state (globals, so thread:get can read them).
statuses = {}
counter = 0

if use_counter then
   function request()
      counter = counter + 1
      return wrk.format(nil, nil, nil,
                        '{"content":"hello from wrk ' .. counter .. '"}')
   end
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, t in ipairs(threads) do
      local s = t:get("statuses")
      for code, n in pairs(s) do
         total[code] = (total[code] or 0) + n
      end
   end

   local codes, n202, non2xx, other = {}, 0, 0, 0
   for code, n in pairs(total) do
      table.insert(codes, code)
      if code == 202 then n202 = n202 + n else other = other + n end
      if code < 200 or code > 299 then non2xx = non2xx + n end
   end
   table.sort(codes)
   local parts = {}
   for _, code in ipairs(codes) do
      table.insert(parts, string.format("%d=%d", code, total[code]))
   end

   local e = summary.errors
   local sock = e.connect + e.read + e.write + e.timeout
   io.write(string.format("status_202: %d\n", n202))
   io.write(string.format("non_2xx: %d\n", non2xx))
   io.write(string.format("status_other: %d\n", other))
   io.write(string.format("status_breakdown: %s\n",
                          #parts > 0 and table.concat(parts, ",") or "none"))
   io.write(string.format("socket_errors: connect=%d read=%d write=%d timeout=%d\n",
                          e.connect, e.read, e.write, e.timeout))
   io.write(string.format("all_accepted: %s\n",
                          (n202 > 0 and other == 0 and sock == 0) and "yes" or "no"))
end
