// bench.js — onnxruntime-node latency on an exported ONNX model
// (tests/export/bench.sh): single-row session.run (p50, p99) and batches of
// 1024 rows (rows/s), one intra-op thread. Inputs: random valid ids and numbers.
'use strict';
const ort = require('onnxruntime-node');
const fs = require('fs');
async function main() {
  const [model, vocabPath] = process.argv.slice(2);
  const vocab = JSON.parse(fs.readFileSync(vocabPath, 'utf8'));
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const F = vocab.ids.length, R = vocab.numeric.length;
  const feeds = (n) => {
    const ids = new Int32Array(n * F), num = new Float32Array(n * R);
    for (let i = 0; i < n * F; i++) ids[i] = 2 + (i % Math.max(1, vocab.ids[i % F].size - 2));
    for (let i = 0; i < n * R; i++) num[i] = (i % 7) - 3;
    const f = {};
    if (s.inputNames.includes('ids')) f.ids = new ort.Tensor('int32', ids, [n, F]);
    if (s.inputNames.includes('numeric')) f.numeric = new ort.Tensor('float32', num, [n, R]);
    return f;
  };
  const one = feeds(1), big = feeds(1024);
  for (let i = 0; i < 500; i++) await s.run(one);
  const lat = [];
  for (let i = 0; i < 5000; i++) {
    const t0 = process.hrtime.bigint();
    await s.run(one);
    lat.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  lat.sort((a, b) => a - b);
  await s.run(big);
  const t0 = process.hrtime.bigint();
  for (let b = 0; b < 50; b++) await s.run(big);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ p50_us: +lat[2500].toFixed(2), p99_us: +lat[4950].toFixed(2),
                               rows_per_s: Math.round(50 * 1024 / dt) }));
}
main();
