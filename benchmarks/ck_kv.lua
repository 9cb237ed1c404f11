-- wrk script for consensuskit's HTTP API, the counterpart of ../shared/bench/etcd_kv.lua.
--
-- Environment (all optional):
--   KV_OP      put | get            (default put)
--   KV_KEYS    number of distinct keys, chosen uniformly at random (default 1000)
--   KV_VSIZE   value size in bytes for put (default 16)
--   KV_CONSISTENCY  linearizable | lease | stale for get (default linearizable)
--
-- Puts carry no X-Request-Id: the node numbers them in its own session (one map entry).
-- Example:
--   KV_OP=put wrk -t2 -c64 -d10s --latency -s benchmarks/ck_kv.lua http://127.0.0.1:7100

local op = os.getenv("KV_OP") or "put"
local nkeys = tonumber(os.getenv("KV_KEYS") or "1000")
local vsize = tonumber(os.getenv("KV_VSIZE") or "16")
local consistency = os.getenv("KV_CONSISTENCY") or "linearizable"

local reqs = {}

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local value = string.rep("v", vsize)
  for i = 1, nkeys do
    local path = string.format("/v1/kv/key%06d", i - 1)
    if op == "put" then
      reqs[i] = wrk.format("PUT", path, { ["Content-Type"] = "application/octet-stream" }, value)
    else
      reqs[i] = wrk.format("GET", path .. "?consistency=" .. consistency, {}, nil)
    end
  end
end

function request()
  return reqs[math.random(nkeys)]
end
