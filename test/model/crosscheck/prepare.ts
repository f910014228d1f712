/**
 * Writes tiny Llama (BF16) and Qwen2 (F32) folders, a PEFT adapter for each, their merges, and
 * rpv's scores, tokenisation and chat rendering into one folder, for check.py to compare with
 * transformers + PEFT on a machine that has them:
 *   npx tsx test/model/crosscheck/prepare.ts <dir> && cp test/model/crosscheck/check.py <dir>/
 *   OUT=. python3 <dir>/check.py     # writes xcheck.json
 */
import { writeTinyModel } from '../../../src/model/tiny.js';
import { loadModel } from '../../../src/model/load.js';
import { initBackend } from '../../../src/model/backend.js';
import { saveAdapter } from '../../../src/model/adapter.js';
import { mergeLora } from '../../../src/model/merge.js';
import { scoreText } from '../../../src/model/score.js';
import { seededRandom } from '../../../src/util/random.js';
import { mkdirSync, writeFileSync } from 'node:fs';
const X = process.argv[2] ?? '.work/model/xcheck';
await initBackend({ backend: 'wasm', log: null });
const text = 'The video shows a woman walking through a night market. 她对着镜头笑，然后指着小摊。 Frame 3 at 4.0s: "Come in, sit down."';
const messages = [{ role: 'system', content: 'You are Li Wei. <|vision_start|><|video_pad|><|video_pad|><|vision_end|>' }, { role: 'user', content: '很辣吗？' }, { role: 'assistant', content: 'Only a little!' }];
const out: any = { text, messages, models: {} };
for (const arch of ['llama', 'qwen2'] as const) {
  const dir = `${X}/${arch}`;
  await writeTinyModel(dir, { arch, hiddenSize: 64, numLayers: 3, numHeads: 8, numKvHeads: 2, vocabSize: 600, initStd: 0.3, seed: 4, dtype: arch === 'llama' ? 'BF16' : 'F32' });
  const model = await loadModel(dir);
  const tok = model.tokenizer!;
  const rendered = tok.applyChatTemplate(messages, { addGenerationPrompt: false });
  const renderedGen = tok.applyChatTemplate(messages.slice(0, 2), { addGenerationPrompt: true });
  model.addLora({ rank: 4, alpha: 8, dropout: 0.05, targetModules: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], useRslora: arch === 'llama', seed: 2 });
  const rng = seededRandom(5);
  for (const p of model.loraPairs()) model.tf.tidy(() => p.bT.assign(model.tf.tensor(rng.normal(p.bT.size, 0.3), p.bT.shape)));
  await saveAdapter(model, `${X}/${arch}-adapter`, { baseModelNameOrPath: arch });
  model.dispose();
  await mergeLora(dir, `${X}/${arch}-adapter`, `${X}/${arch}-merged`);
  out.models[arch] = {
    base: await scoreText({ model: dir, text }),
    adapter: await scoreText({ model: dir, adapter: `${X}/${arch}-adapter`, text }),
    merged: await scoreText({ model: `${X}/${arch}-merged`, text }),
    rendered, renderedGen, chatIds: tok.encode(rendered),
  };
}
mkdirSync(X, { recursive: true });
writeFileSync(`${X}/rpv.json`, JSON.stringify(out));
console.log('ok');
