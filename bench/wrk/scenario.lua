-- wrk script for bench/api.rs. Each request picks a random target line ("<api key>
-- <project id>") from $TARGETS, so requests spread over tenants and projects; $SCENARIO
-- chooses the request: list_projects, get_project, list_tasks, create_task or mix
-- (40/30/20/10 of the four).
local targets = {}
local scenario = os.getenv("SCENARIO") or "list_projects"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  for line in io.lines(os.getenv("TARGETS")) do
    local key, pid = line:match("^(%S+) (%S+)$")
    if key then
      targets[#targets + 1] = { "Bearer " .. key, pid }
    end
  end
  math.randomseed(os.time() * 1000 + (tid or 0))
end

function request()
  local t = targets[math.random(#targets)]
  local s = scenario
  if s == "mix" then
    local r = math.random(100)
    if r <= 40 then s = "list_projects"
    elseif r <= 70 then s = "get_project"
    elseif r <= 90 then s = "list_tasks"
    else s = "create_task" end
  end
  local h = { ["Authorization"] = t[1] }
  if s == "list_projects" then
    return wrk.format("GET", "/v1/projects?limit=20", h)
  elseif s == "get_project" then
    return wrk.format("GET", "/v1/projects/" .. t[2], h)
  elseif s == "list_tasks" then
    return wrk.format("GET", "/v1/tasks?project_id=" .. t[2] .. "&limit=20", h)
  else
    h["Content-Type"] = "application/json"
    return wrk.format("POST", "/v1/tasks", h,
      '{"project_id":"' .. t[2] .. '","title":"bench task"}')
  end
end
