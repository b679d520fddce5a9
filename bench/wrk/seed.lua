-- wrk script for bench/seed_compare.rs. Requests walk the target lines ("<api key>
-- <project id>", written tenant by tenant in turn) in order, so consecutive requests
-- rotate across tenants. $SCENARIO: list (GET $LIST_PATH) or get (GET /v1/projects/<id>).
local targets = {}
local i = 0
local scenario = os.getenv("SCENARIO") or "list"
local list_path = os.getenv("LIST_PATH") or "/v1/projects"

function init(args)
  for line in io.lines(os.getenv("TARGETS")) do
    local key, pid = line:match("^(%S+) (%S+)$")
    if key then
      targets[#targets + 1] = { "Bearer " .. key, pid }
    end
  end
end

function request()
  i = i % #targets + 1
  local t = targets[i]
  local h = { ["Authorization"] = t[1] }
  if scenario == "list" then
    return wrk.format("GET", list_path, h)
  end
  return wrk.format("GET", "/v1/projects/" .. t[2], h)
end
