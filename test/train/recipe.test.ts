import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { parseRecipe } from '../../src/index.js';
import { recipeKeys } from '../../src/train/recipe.js';

const minimal = 'output_dir: runs/x\nmodel:\n  path: models/tiny\ndata:\n  shards: shards/x\n';

describe('recipe', () => {
  it('fills defaults', () => {
    const r = parseRecipe(minimal);
    expect(r.optimizer.lr).toBe(2e-4);
    expect(r.lora.target_modules).toEqual(['q', 'k', 'v', 'o']);
    expect(r.resume).toBeNull();
    expect(r.prompt.loss_on).toBe('all');
  });

  it('reports every unknown key, wrong type and missing key at once, with its path', () => {
    const text = [
      'output_dir: 3',
      'model:',
      '  backend: gpu',
      'data:',
      '  shards: s',
      '  batch_size: four',
      'optimizer:',
      '  lrr: 0.1',
      'lora:',
      '  target_modules: [q, x]',
      'extra: 1',
    ].join('\n');
    expect(() => parseRecipe(text, ['train.max_stepz=3', 'lora.r=0.5'], 'recipes/bad.yaml')).toThrow(
      [
        'recipes/bad.yaml: 9 errors:',
        '  train.max_stepz: unknown key (did you mean train.max_steps?) (override train.max_stepz=3)',
        '  extra: unknown key',
        '  output_dir: expected a string, found number 3',
        '  model.path: required, expected a string',
        '  model.backend: expected one of auto, tensorflow, webgpu, wasm, cpu, found string "gpu"',
        '  data.batch_size: expected an integer >= 1, found string "four"',
        '  lora.r: expected an integer >= 1, found number 0.5',
        '  lora.target_modules: expected a list of q, k, v, o, gate, up, down, found a list ["q","x"]',
        '  optimizer.lrr: unknown key (did you mean optimizer.lr?)',
      ].join('\n'),
    );
  });

  it('types overrides by the schema', () => {
    const r = parseRecipe(minimal, [
      'optimizer.lr=1e-3',
      'lora.target_modules=[q,v]',
      'data.use_video=false',
      'train.max_steps=7',
      'model.threads=null',
      'output_dir=123',
    ]);
    expect(r.optimizer.lr).toBe(1e-3);
    expect(r.lora.target_modules).toEqual(['q', 'v']);
    expect(r.data.use_video).toBe(false);
    expect(r.train.max_steps).toBe(7);
    expect(r.model.threads).toBeNull();
    expect(r.output_dir).toBe('123');
  });

  it('rejects bad override values and sections', () => {
    expect(() => parseRecipe(minimal, ['data.use_video=yes', 'lora=3', 'nonsense'])).toThrow(
      [
        'recipe: 3 errors:',
        '  lora: is a section, override one of its keys (lora.r, lora.alpha, lora.dropout, lora.target_modules, lora.rslora)',
        '  override "nonsense": expected key=value',
        '  data.use_video: expected true or false, found string "yes"',
      ].join('\n'),
    );
  });

  it('names the line of a YAML syntax error', () => {
    expect(() => parseRecipe('output_dir: x\nmodel: [a\n', [], 'r.yaml')).toThrow(/^r\.yaml: invalid YAML:\n {2}line \d+ column \d+: /);
  });

  it('every shipped recipe is valid, opens with its command and comments every knob', () => {
    const files = readdirSync('recipes').filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const f of files) {
      const text = readFileSync(`recipes/${f}`, 'utf8');
      expect(text.split('\n')[0], f).toMatch(/^# .*rpv train recipes\//);
      parseRecipe(text, [], f);
      for (const line of text.split('\n')) {
        // every `key: value` line carries a comment explaining it
        if (/^\s*[a-z_]+:\s*\S/.test(line)) expect(line, `${f}: ${line}`).toMatch(/#/);
      }
    }
    expect(recipeKeys()).toContain('optimizer.lr');
  });
});
