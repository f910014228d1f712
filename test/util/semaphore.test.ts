import { describe, expect, it } from 'vitest';
import { Semaphore } from '../../src/util/semaphore.js';

describe('Semaphore', () => {
  it('holds at most `limit` at once, serves waiters in order, and frees the slot on errors', async () => {
    const slots = new Semaphore(2);
    let active = 0;
    let peak = 0;
    const order: number[] = [];
    const job = (k: number, ms: number) =>
      slots.run(async () => {
        active++;
        peak = Math.max(peak, active);
        order.push(k);
        await new Promise((r) => setTimeout(r, ms));
        active--;
        if (k === 1) throw new Error('job 1 failed');
        return k;
      });
    const results = await Promise.allSettled([job(0, 20), job(1, 5), job(2, 5), job(3, 5), job(4, 5)]);
    expect(peak).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    // Every slot came back: two more can start at once.
    await Promise.all([slots.acquire(), slots.acquire()]);
    expect(() => new Semaphore(0)).toThrow('Semaphore: limit must be an integer >= 1, got 0');
  });
});
