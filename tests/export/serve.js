// serve.js — a server-side use of an exported model, for the parity test
// (tests/lua/test_export.lua): encode the raw rows of a CSV file with the
// vocabulary JSON written by m:export (not with towerlab), run the ONNX model
// in onnxruntime-node, and compare each task's output with m:predict's file.
//
//   node serve.js [--sep=FIELD=SEP ...] model.onnx model.vocab.json data.csv pred.csv [outputs.csv]
//
// A multi-valued field's text is split on its separator (the tl.data.csv
// spec's multi=, which the JSON does not record: "|" unless --sep names
// another), its values encoded as the JSON says, the first or last `slots`
// kept, the rest of the row's slots -1; a missing field is an empty bag.
//
// outputs.csv, when given, receives onnxruntime's outputs (row,<task>,...).
// Prints one JSON line: {"rows": n, "max_abs": {"task": d, ...}, "ids_sha": ...}.
// Exit status 2 when onnxruntime-node is not installed (the test skips).
'use strict';
const fs = require('fs');
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.log(JSON.stringify({ skip: 'onnxruntime-node not installed (make deps)' }));
  process.exit(2);
}

// One CSV line: fields may be quoted ("" inside quotes is one quote).
function splitCsv(line) {
  const out = [];
  let i = 0, f = '', q = false;
  for (; i < line.length; i++) {
    const c = line[i];
    if (q) {
      if (c === '"' && line[i + 1] === '"') { f += '"'; i++; }
      else if (c === '"') q = false;
      else f += c;
    } else if (c === '"') q = true;
    else if (c === ',') { out.push(f); f = ''; }
    else f += c;
  }
  out.push(f);
  return out;
}

const MISSING = new Set(['', '?']); // tl.data.csv's default missing values

// The hash of hash-bucket fields ("towerlab-xxh64", engine/data/hash.h): the
// xxhash64 rounds over the value's UTF-8 bytes, except that the last 1..7
// bytes are one little-endian word taking one 8-byte round. 64-bit BigInt.
const M64 = (1n << 64n) - 1n;
const P1 = 0x9E3779B185EBCA87n, P2 = 0xC2B2AE3D27D4EB4Fn, P3 = 0x165667B19E3779F9n, P4 = 0x85EBCA77C2B2AE63n;
const add = (a, b) => (a + b) & M64, mul = (a, b) => (a * b) & M64;
const rotl = (x, r) => ((x << BigInt(r)) | (x >> BigInt(64 - r))) & M64;
const xround = (acc, v) => mul(rotl(add(acc, mul(v, P2)), 31), P1);
const word = (b, p, n) => { let w = 0n; for (let i = n - 1; i >= 0; i--) w = (w << 8n) | BigInt(b[p + i]); return w; };
function hashBytes(b, seed) {
  let n = b.length, p = 0, h;
  seed = BigInt(seed);
  if (n >= 32) {
    const v = [add(add(seed, P1), P2), add(seed, P2), seed, (seed - P1) & M64];
    do {
      for (let i = 0; i < 4; i++) v[i] = xround(v[i], word(b, p + 8 * i, 8));
      p += 32; n -= 32;
    } while (n >= 32);
    h = add(add(add(rotl(v[0], 1), rotl(v[1], 7)), rotl(v[2], 12)), rotl(v[3], 18));
    for (const x of v) h = add(mul(h ^ xround(0n, x), P1), P4);
  } else {
    h = add(seed, P3);
  }
  h = add(h, BigInt(b.length));
  for (; n >= 8; p += 8, n -= 8) h = add(mul(rotl(h ^ xround(0n, word(b, p, 8)), 27), P1), P4);
  if (n) h = add(mul(rotl(h ^ xround(0n, word(b, p, n)), 27), P1), P4);
  h ^= h >> 33n; h = mul(h, P2); h ^= h >> 29n; h = mul(h, P3); h ^= h >> 32n;
  return h;
}

// Raw value -> id, for each field kind of the vocabulary JSON.
function encoder(field) {
  if (field.kind === 'vocab') {
    const ids = new Map(field.values.map((v, i) => [v, field.first + i]));
    return (raw) => (MISSING.has(raw) ? field.missing : ids.has(raw) ? ids.get(raw) : field.oov);
  }
  if (field.kind === 'hash') {
    if (field.hash !== 'towerlab-xxh64') throw new Error(`field ${field.name}: hash ${field.hash}`);
    const B = BigInt(field.buckets);
    return (raw) => (MISSING.has(raw) ? field.missing : Number(hashBytes(Buffer.from(raw, 'utf8'), field.seed) % B));
  }
  if (field.kind === 'quantile') { // 1 + the number of edges <= x, in float32
    const edges = field.edges.map(Math.fround);
    return (raw) => {
      const x = MISSING.has(raw) ? NaN : Math.fround(parseFloat(raw));
      if (Number.isNaN(x)) return field.missing;
      let k = 0;
      while (k < edges.length && edges[k] <= x) k++;
      return field.first + k;
    };
  }
  throw new Error(`field ${field.name}: kind ${field.kind} not handled here`);
}

// Raw field -> its slots (Int32Array of field.slots), for a bag field of the JSON.
function bagEncoder(field, sep) {
  // each value as a single field's, except that inside a bag "?" is a value like any other
  let one;
  if (field.kind === 'vocab') {
    const ids = new Map(field.values.map((v, i) => [v, field.first + i]));
    one = (v) => (ids.has(v) ? ids.get(v) : field.oov);
  } else if (field.kind === 'hash' && field.hash === 'towerlab-xxh64') {
    const B = BigInt(field.buckets);
    one = (v) => Number(hashBytes(Buffer.from(v, 'utf8'), field.seed) % B);
  } else {
    throw new Error(`bag field ${field.name}: kind ${field.kind} not handled here`);
  }
  return (raw) => {
    const out = new Int32Array(field.slots).fill(field.pad);
    if (MISSING.has(raw)) return out;
    let vals = raw.split(sep);
    if (vals.length > field.slots) {
      vals = field.keep === 'first' ? vals.slice(0, field.slots) : vals.slice(-field.slots);
    }
    vals.forEach((v, i) => { out[i] = one(v); });
    return out;
  };
}

async function main() {
  const seps = {}, args = [];
  for (const a of process.argv.slice(2)) {
    const m = a.match(/^--sep=([^=]+)=(.+)$/);
    if (m) seps[m[1]] = m[2]; else args.push(a);
  }
  const [modelPath, vocabPath, csvPath, predPath, outPath] = args;
  const vocab = JSON.parse(fs.readFileSync(vocabPath, 'utf8'));
  const lines = fs.readFileSync(csvPath, 'utf8').split('\n').filter((l) => l.length);
  const header = splitCsv(lines[0]);
  const col = (name) => {
    const j = header.indexOf(name);
    if (j < 0) throw new Error(`column ${name} not in ${csvPath}`);
    return j;
  };
  const catCols = vocab.ids.map((f) => col(f.name)), enc = vocab.ids.map(encoder);
  const numCols = vocab.numeric.map((c) => col(c.name));
  const n = lines.length - 1, F = catCols.length, R = numCols.length;
  const ids = new Int32Array(n * F), num = new Float32Array(n * R);
  for (let r = 0; r < n; r++) {
    const v = splitCsv(lines[r + 1]);
    for (let f = 0; f < F; f++) ids[r * F + f] = enc[f](v[catCols[f]]);
    for (let j = 0; j < R; j++) {
      const s = v[numCols[j]];
      num[r * R + j] = MISSING.has(s) ? NaN : parseFloat(s);
    }
  }
  const bags = (vocab.bags || []).map((b) => ({
    field: b, col: col(b.name), enc: bagEncoder(b, seps[b.name] || '|'), data: new Int32Array(n * b.slots),
  }));
  for (let r = 0; r < n; r++) {
    const v = splitCsv(lines[r + 1]);
    for (const b of bags) b.data.set(b.enc(v[b.col]), r * b.field.slots);
  }
  const session = await ort.InferenceSession.create(modelPath);
  const feeds = {};
  for (const b of bags) feeds[b.field.input] = new ort.Tensor('int32', b.data, [n, b.field.slots]);
  if (session.inputNames.includes('ids')) feeds.ids = new ort.Tensor('int32', ids, [n, F]);
  if (session.inputNames.includes('numeric')) feeds.numeric = new ort.Tensor('float32', num, [n, R]);
  const res = await session.run(feeds);
  // pred.csv: row,<task>,... (row = the line in the source file)
  const plines = fs.readFileSync(predPath, 'utf8').split('\n').filter((l) => l.length);
  const ph = plines[0].split(',');
  const out = { rows: n, max_abs: {} };
  for (const o of vocab.outputs) {
    const got = res[o.name].data, j = ph.indexOf(o.name);
    if (j < 0) throw new Error(`task ${o.name} not in ${predPath}`);
    if (plines.length - 1 !== n) throw new Error(`${predPath} has ${plines.length - 1} rows, the CSV ${n}`);
    let m = 0;
    for (let r = 0; r < n; r++) {
      const want = parseFloat(plines[r + 1].split(',')[j]);
      const d = Math.abs(got[r] - want);
      m = Number.isNaN(d) ? Infinity : Math.max(m, d);
    }
    out.max_abs[o.name] = m;
  }
  if (outPath) {
    const names = vocab.outputs.map((o) => o.name);
    const text = ['row,' + names.join(',')];
    for (let r = 0; r < n; r++) text.push([r + 1, ...names.map((t) => res[t].data[r].toPrecision(9))].join(','));
    fs.writeFileSync(outPath, text.join('\n') + '\n');
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e && e.message || e) }));
  process.exit(1);
});
