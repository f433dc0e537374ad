-- One request shape per wrk run, configured from the command line after `--`:
--   wrk ... -s request.lua <url> -- METHOD PATH BODY_FILE|- ID_LO|- ID_HI|- [Header: value]...
-- PATH may contain "{id}": each request then picks an id uniformly in [ID_LO, ID_HI].
-- done() prints one JSON line that bench/harness.py parses.
local method, path, body, lo, hi, fixed
local headers = {}

function init(args)
  method = args[1]
  path = args[2]
  if args[3] ~= "-" then
    local f = assert(io.open(args[3], "rb"))
    body = f:read("*a")
    f:close()
    headers["Content-Type"] = "application/json"
  end
  if args[4] ~= "-" then
    lo = tonumber(args[4])
    hi = tonumber(args[5])
  end
  for i = 6, #args do
    local k, v = string.match(args[i], "^([^:]+):%s*(.*)$")
    headers[k] = v
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  if not lo then
    fixed = wrk.format(method, path, headers, body)
  end
end

function request()
  if fixed then
    return fixed
  end
  local p = string.gsub(path, "{id}", tostring(math.random(lo, hi)))
  return wrk.format(method, p, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nWRK_RESULT {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeout_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
