-- wrk script: POSTs Coral's exact comments:analyze body, rotating over a fixed list of comments
-- (English and Arabic, short and about 300 characters; written for this benchmark).
--
--   wrk -t2 -c32 -d15s --latency -s benches/http/coral.lua URL
--       closed loop (each connection sends its next request when the previous one is answered):
--       throughput, with wrk's own latency percentiles.
--   wrk -t8 -c8 -d15s -s benches/http/coral.lua URL -- paced RATE THREADS
--       open loop at RATE requests/s in total: each thread (exactly one connection per thread:
--       -c equal to -t, THREADS the same number) sends on a fixed schedule of RATE/THREADS
--       requests/s, phases spread evenly over the threads. Debian's wrk 4 has no -R (wrk2 has),
--       so delay() paces. A request sent late because its connection was still waiting for the
--       previous answer is timed from its scheduled instant, not from when it went out (the
--       "coordinated omission" correction wrk2 makes); one sent late only because the client's
--       timer fired late is timed from when it went out.
--
-- URL: http://HOST:PORT/v1alpha1/comments:analyze?key=... . done() prints one line
-- `CORAL mode=... requests=... seconds=... rps=... p50_ms=... p99_ms=... errors=...`.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } coral_timespec;
int clock_gettime(int clock, coral_timespec *ts);
]]
local timespec = ffi.new("coral_timespec")
local function now_us()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC, shared by all threads
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

local comments = {
  "Great reporting, thanks for covering the school board meeting.",
  "Only an idiot would believe this garbage. Go back to school.",
  "I have lived on this street for twenty years and the traffic has never been this bad. "
    .. "The new apartment blocks were approved without any plan for parking or buses, and "
    .. "now the council acts surprised. Before anyone votes next month, ask your candidate "
    .. "what they will actually do about it, and write it down.",
  "شكرا على هذا التقرير المفيد، ننتظر المزيد من التغطية",
  "كلامك فارغ يا جاهل ولا أحد يهتم برأيك",
  "أسكن في هذا الحي منذ عشرين سنة ولم تكن الخدمات بهذا السوء من قبل. المياه تنقطع كل "
    .. "أسبوع والطرق مليئة بالحفر، والبلدية تعد بالإصلاح قبل كل انتخابات ثم تنسى وعودها. "
    .. "نريد من الصحافة أن تتابع هذه القضية وأن تسأل المسؤولين عن الميزانية التي خصصت "
    .. "للحي وأين ذهبت.",
  "Nice photos 📷 but the headline is misleading, the vote was 5 to 4 not unanimous.",
  "هذا المقال منحاز تماما 😡 والكاتب لا يعرف شيئا عن الموضوع",
}

local function json_string(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

local requests = {}
for i, text in ipairs(comments) do
  local body = '{"comment":{"text":' .. json_string(text) .. '},"doNotStore":true,'
    .. '"requestedAttributes":{"TOXICITY":{}},"languages":["en"]}'
  requests[i] = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

-- Setup and done run in wrk's main Lua state; each thread gets its index.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("index", #threads)
end

local next_request = 1

function init(args)
  next_request = (index - 1) % #requests + 1
  if args[1] == "paced" then
    local rate, count = tonumber(args[2]), tonumber(args[3])
    assert(rate and count, "usage: -- paced RATE THREADS")
    local interval = 1e6 * count / rate -- µs between this thread's sends
    local first = now_us() + interval * (index - 1) / count
    local busy_since_slot = false
    local slot = first
    -- Globals, for done() to read through thread:get(): latencies (µs), answers other than
    -- 200 (wrk itself counts those >= 400), overlapping requests, slots taken.
    lat, errors, overlaps, k = {}, 0, 0, 0

    function delay()
      slot = first + k * interval
      k = k + 1
      local wait = slot - now_us()
      return wait > 0 and math.floor(wait / 1e3 + 0.5) or 0
    end

    local outstanding = nil
    function request()
      if k == 0 then
        return requests_next() -- wrk's check of the script, before the run: not sent
      end
      if outstanding then
        overlaps = overlaps + 1
      end
      local t = now_us()
      -- Late because the previous answer came after this slot: time it from the slot.
      outstanding = busy_since_slot and slot or t
      return requests_next()
    end

    function response(status)
      local t = now_us()
      if status ~= 200 and status < 400 then
        errors = errors + 1
      end
      if outstanding then
        lat[#lat + 1] = t - outstanding
      end
      outstanding = nil
      -- Is the connection answered only after the next request's slot?
      busy_since_slot = t > first + k * interval
    end
  end
end

function requests_next()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  return r
end

function request()
  return requests_next()
end

local function report(mode, requests, seconds, p50_us, p99_us, errors)
  io.write(string.format("CORAL mode=%s requests=%d seconds=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    mode, requests, seconds, requests / seconds, p50_us / 1e3, p99_us / 1e3, errors))
end

function done(summary, latency, _)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local paced = threads[1]:get("lat")
  if not paced then
    report("throughput", summary.requests, seconds, latency:percentile(50), latency:percentile(99), errors)
    return
  end
  local all, overlaps = {}, 0
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("lat")) do
      all[#all + 1] = v
    end
    errors = errors + t:get("errors")
    overlaps = overlaps + t:get("overlaps")
  end
  if overlaps > 0 then
    io.stderr:write("coral.lua: paced mode needs one connection per thread (-c equal to -t)\n")
    os.exit(2)
  end
  table.sort(all)
  local function pct(p)
    return all[math.max(1, math.ceil(#all * p / 100))]
  end
  report("paced", #all, seconds, pct(50), pct(99), errors)
  io.write(string.format("CORAL wrk_own_latency p50_ms=%.3f p99_ms=%.3f\n",
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
