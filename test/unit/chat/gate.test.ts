import { describe, expect, it } from 'vitest';
import { CancelledError } from '../../../src/core/errors.ts';
import { FifoGate } from '../../../src/chat/gate.ts';

const tick = () => new Promise((r) => setImmediate(r));

describe('FifoGate', () => {
  it('admits `limit` at once and the rest in arrival order; each leave admits the next', async () => {
    const gate = new FifoGate(2);
    const order: number[] = [];
    const leaves: Array<() => void> = [];
    const enter = (i: number) => gate.enter().then((leave) => { order.push(i); leaves[i] = leave; });
    const all = [0, 1, 2, 3, 4].map(enter);
    await tick();
    expect(order).toEqual([0, 1]);
    expect([gate.active(), gate.depth()]).toEqual([2, 3]);
    leaves[1]!();
    leaves[1]!(); // a second call changes nothing
    await tick();
    expect(order).toEqual([0, 1, 2]);
    expect([gate.active(), gate.depth()]).toEqual([2, 2]);
    leaves[0]!();
    leaves[2]!();
    await tick();
    expect(order).toEqual([0, 1, 2, 3, 4]);
    leaves[3]!();
    leaves[4]!();
    await Promise.all(all);
    expect([gate.active(), gate.depth()]).toEqual([0, 0]);
  });

  it('a waiter whose request is cancelled leaves the line with CancelledError; an aborted signal is refused at once', async () => {
    const gate = new FifoGate(1);
    const first = await gate.enter();
    const ac = new AbortController();
    const waiting = gate.enter(ac.signal);
    const behind = gate.enter();
    expect(gate.depth()).toBe(2);
    ac.abort();
    await expect(waiting).rejects.toBeInstanceOf(CancelledError);
    expect(gate.depth()).toBe(1);
    first();
    const second = await behind;
    expect(gate.active()).toBe(1);
    second();
    expect(gate.active()).toBe(0);
    await expect(gate.enter(AbortSignal.abort())).rejects.toBeInstanceOf(CancelledError);
    expect(() => new FifoGate(0)).toThrow(RangeError);
  });
});
