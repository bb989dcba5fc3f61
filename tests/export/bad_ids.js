// bad_ids.js — out-of-range ids in an exported ONNX model (tests/lua/test_export.lua):
// for each field, rows whose id is one past the field's vocabulary, far past and
// negative must give the outputs of the same row with id 0 (the unseen value),
// never another field's embedding or a runtime error. A multi-valued field
// likewise, in its first slot (its second holds id 2, the rest -1): -1 is an
// empty slot, any other id outside 0 .. size-1 reads as id 0.
//
//   node bad_ids.js model.onnx model.vocab.json
//
// Prints one JSON line {"rows": n, "max_abs": d}; exit status 2 without onnxruntime-node.
'use strict';
const fs = require('fs');
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.log(JSON.stringify({ skip: 'onnxruntime-node not installed (make deps)' }));
  process.exit(2);
}

async function main() {
  const [modelPath, vocabPath] = process.argv.slice(2);
  const vocab = JSON.parse(fs.readFileSync(vocabPath, 'utf8'));
  const bagFields = vocab.bags || [];
  const F = vocab.ids.length, R = vocab.numeric.length;
  // a row: single ids 2 (or 1), every bag [2, 2, -1, ...] (or fewer slots)
  const base = () => ({
    ids: vocab.ids.map((g) => Math.min(2, g.size - 1)),
    bags: bagFields.map((b) => Array.from({ length: b.slots }, (_, s) => (s < 2 ? Math.min(2, b.size - 1) : -1))),
  });
  // pairs of rows: (bad id in field f, id 0 in field f)
  const rows = [];
  const bads = (size) => [size, 1000000, -3];
  vocab.ids.forEach((field, f) => {
    for (const bad of bads(field.size)) {
      const b = base(), z = base();
      b.ids[f] = bad; z.ids[f] = 0;
      rows.push(b, z);
    }
  });
  bagFields.forEach((field, k) => {
    for (const bad of bads(field.size)) {
      const b = base(), z = base();
      b.bags[k][0] = bad; z.bags[k][0] = 0;
      rows.push(b, z);
    }
  });
  const n = rows.length, ids = new Int32Array(n * F), num = new Float32Array(n * R).fill(0.5);
  rows.forEach((r, i) => r.ids.forEach((v, f) => { ids[i * F + f] = v; }));
  const session = await ort.InferenceSession.create(modelPath);
  const feeds = {};
  if (session.inputNames.includes('ids')) feeds.ids = new ort.Tensor('int32', ids, [n, F]);
  if (session.inputNames.includes('numeric')) feeds.numeric = new ort.Tensor('float32', num, [n, R]);
  bagFields.forEach((field, k) => {
    const a = new Int32Array(n * field.slots);
    rows.forEach((r, i) => a.set(r.bags[k], i * field.slots));
    feeds[field.input] = new ort.Tensor('int32', a, [n, field.slots]);
  });
  const res = await session.run(feeds);
  let worst = 0;
  for (const o of vocab.outputs) {
    const y = res[o.name].data;
    for (let i = 0; i < n; i += 2) worst = Math.max(worst, Math.abs(y[i] - y[i + 1]));
  }
  console.log(JSON.stringify({ rows: n, max_abs: worst }));
}

main().catch((e) => { console.error(e.message); process.exit(1); });
