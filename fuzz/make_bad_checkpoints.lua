-- make_bad_checkpoints.lua — hand-made CRC-valid checkpoints with one field
-- out of range (issue 25 item 5), for fuzz/crashes/checkpoint/: each is a seed
-- of fuzz/corpus/checkpoint with one CONF or TRNS field rewritten and the
-- header length and CRC32 recomputed.
--   towerlab fuzz/make_bad_checkpoints.lua [outdir=fuzz/crashes/checkpoint]
-- The CONF walk mirrors put_config in engine/io.c (format version 1).
local out = arg[1] or "fuzz/crashes/checkpoint"
local seeds = "fuzz/corpus/checkpoint/"

local CRC = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1) ~= 0 and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  CRC[i] = c
end
local function crc32(s, n)
  local c = 0xFFFFFFFF
  for i = 1, n do c = CRC[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Offsets (1-based) of the named fields: CONF ones and TRNS epoch.
local function fields(s)
  local at, f = 25, {}
  local function u32() local v = string.unpack("<I4", s, at); at = at + 4; return v end
  local function skip(n) at = at + n end
  while at < #s - 4 do
    local tag = s:sub(at, at + 3)
    local len = string.unpack("<I8", s, at + 8)
    local body = at + 16
    if tag == "CONF" then
      at = body
      f.backbone = at; skip(4)
      for _ = 1, 2 do local n = u32(); skip(4 * n + 4) end   -- bottom, expert mlp
      skip(4 * 4 + 4 + 4)                                     -- experts..specific, constraint, transfer_dim
      local K = u32(); f.n_tasks = at - 4
      for k = 1, K do
        local n = u32(); skip(n)
        f["type" .. k] = at; skip(4)
        local l = u32(); skip(4 * l + 4)
        skip(4)
      end
      local nc = u32(); skip(4 * nc)
      skip(4 + 4)                                             -- n_num, emb_dim
      f.weighting = at; skip(4 + 4 + 4 + 4 + 8)               -- weighting, alpha, temperature, max_batch, seed
      skip(5 * 4 + 4)                                         -- dml
      f.distill_enabled = at; skip(4)
      local np = u32(); skip(12 * np)
      f.order = at; skip(4 + 4 + 4 + 4)
      f.calibrate = at; skip(4 + 4)
      f.correct = at
    elseif tag == "TRNS" then
      f.epoch = body + 8
    end
    at = body + len
  end
  return f
end

local function patch(name, seed, field, value, fmt)
  local s = read(seeds .. seed)
  local off = fields(s)[field]
  assert(off, seed .. ": no field " .. field)
  s = s:sub(1, off - 1) .. string.pack(fmt or "<i4", value) .. s:sub(off + 4)
  local n = #s
  s = s:sub(1, 16) .. string.pack("<I8", n) .. s:sub(25)
  s = s:sub(1, n - 4) .. string.pack("<I4", crc32(s, n - 4))
  local f = assert(io.open(out .. "/" .. name, "wb"))
  f:write(s)
  f:close()
  print("wrote " .. out .. "/" .. name)
end

os.execute("mkdir -p " .. out)
patch("crash-conf_distill_correct_16", "crossdistil.tlm", "correct", 16)
patch("crash-conf_distill_calibrate_7", "crossdistil.tlm", "calibrate", 7)
patch("crash-conf_distill_order_5", "crossdistil.tlm", "order", 5)
patch("crash-conf_weighting_9", "mmoe.tlm", "weighting", 9)
patch("crash-conf_weighting_negative", "mmoe_uncertainty.tlm", "weighting", -1)
patch("crash-conf_task_type_3", "mmoe.tlm", "type1", 3)
patch("crash-conf_backbone_kind_42", "shared_bottom.tlm", "backbone", 42)
patch("crash-trns_epoch_int_max", "mmoe.tlm", "epoch", 0x7fffffff)
patch("crash-trns_epoch_negative", "mmoe.tlm", "epoch", -5)
