// Empty values in recipes: a key set to nothing is named (not an ENOENT from deep inside), an
// empty list of LoRA targets is refused, and a file of comments alone is a recipe made of its
// command-line overrides.
import { describe, expect, it } from 'vitest';
import { parseRecipe } from '../../src/index.js';

const minimal = 'output_dir: runs/x\nmodel:\n  path: models/tiny\ndata:\n  shards: shards/x\n';
const required = ['output_dir=runs/x', 'model.path=models/tiny', 'data.shards=shards/x'];

describe('recipe: empty values', () => {
  it('lora.target_modules=[] is refused, naming the key', () => {
    const message = 'test.yaml: 1 error:\n  lora.target_modules: expected at least one of q, k, v, o, gate, up, down, found an empty list (LoRA needs at least one module to adapt)';
    expect(() => parseRecipe(minimal, ['lora.target_modules=[]'], 'test.yaml')).toThrow(message);
    expect(() => parseRecipe(`${minimal}lora: {target_modules: []}\n`, [], 'test.yaml')).toThrow(message);
  });

  it('model.path= (empty) is refused, naming the key model.path', () => {
    expect(() => parseRecipe(minimal, ['model.path='], 'test.yaml')).toThrow(
      'test.yaml: 1 error:\n  model.path: expected a non-empty string (the model folder), found an empty string',
    );
    expect(() => parseRecipe(minimal, ['output_dir=', 'data.shards= ', 'resume='], 'test.yaml')).toThrow(
      [
        'test.yaml: 3 errors:',
        '  output_dir: expected a non-empty string (the run folder), found an empty string',
        '  data.shards: expected a non-empty string (the shard folder or index.json URL), found an empty string',
        '  resume: expected a non-empty string (a run or checkpoint folder; null for a new run), found an empty string',
      ].join('\n'),
    );
  });

  it('a comment-only recipe file plus the required overrides is accepted', () => {
    const r = parseRecipe('# rpv train recipes/empty.yaml output_dir=... model.path=... data.shards=...\n# nothing else\n', required, 'empty.yaml');
    expect([r.output_dir, r.model.path, r.data.shards]).toEqual(['runs/x', 'models/tiny', 'shards/x']);
    expect(r.optimizer.lr).toBe(2e-4);
    expect(parseRecipe('', required).model.path).toBe('models/tiny');
    // Without them, each missing key is still named.
    expect(() => parseRecipe('# comments only\n', ['output_dir=runs/x'], 'empty.yaml')).toThrow(
      'empty.yaml: 2 errors:\n  model.path: required, expected a string\n  data.shards: required, expected a string',
    );
  });
});
