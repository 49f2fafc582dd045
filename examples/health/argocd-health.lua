-- Argo CD health of a perfsync PerfTest: Healthy once a run of the current revision passed,
-- Degraded when it failed or the spec does not validate, Progressing until then.
hs = { status = "Progressing", message = "no run of the current revision has ended yet" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" and c.status == "False" then
    hs.status = "Degraded"
    hs.message = c.message
    return hs
  end
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Passed" then
    if c.status == "True" then
      hs.status = "Healthy"
    elseif c.status == "False" then
      hs.status = "Degraded"
    end
    hs.message = c.message
  end
end
return hs
