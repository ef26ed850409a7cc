import type { Pod } from './pod-types';
import { expand, fieldRef, resourceFieldRef } from './downward';
import { parseQuantity } from './quantity';

const pod = {
  metadata: { name: 'p', namespace: 'ns', uid: 'u', labels: { b: '2', a: '1' }, annotations: { note: 'x"y' } },
  spec: { nodeName: 'n1', containers: [] },
} as unknown as Pod;
const addr = { podIP: '10.88.0.7', hostIP: '10.88.0.1' };

describe('downward API', () => {
  test('field references', () => {
    expect(fieldRef(pod, { fieldPath: 'metadata.name' }, addr)).toBe('p');
    expect(fieldRef(pod, { fieldPath: 'spec.serviceAccountName' }, addr)).toBe('default');
    expect(fieldRef(pod, { fieldPath: 'status.podIP' }, addr)).toBe('10.88.0.7');
    expect(fieldRef(pod, { fieldPath: "metadata.labels['b']" }, addr)).toBe('2');
    // The kubelet's file format: sorted key="quoted value" lines.
    expect(fieldRef(pod, { fieldPath: 'metadata.labels' }, addr)).toBe('a="1"\nb="2"');
    expect(fieldRef(pod, { fieldPath: 'metadata.annotations' }, addr)).toBe('note="x\\"y"');
    expect(() => fieldRef(pod, { fieldPath: 'spec.bogus' }, addr)).toThrow(/unsupported/);
  });

  test('resource references round up and fall back to the node', () => {
    const c = { name: 'c', resources: { limits: { cpu: '250m', memory: '64Mi' } } };
    const node = { cpu: 64, memory: 2 ** 38 };
    expect(resourceFieldRef(c, { resource: 'limits.cpu' }, node)).toBe('1');
    expect(resourceFieldRef(c, { resource: 'limits.cpu', divisor: '1m' }, node)).toBe('250');
    expect(resourceFieldRef(c, { resource: 'limits.memory', divisor: '1Mi' }, node)).toBe('64');
    expect(resourceFieldRef(c, { resource: 'requests.memory', divisor: '1Mi' }, node)).toBe('64');
    expect(resourceFieldRef({ name: 'd' }, { resource: 'limits.cpu' }, node)).toBe('64');
  });

  test('$(VAR) expansion', () => {
    expect(expand('$(A)-$(B)-$(MISSING)', { A: 'a', B: 'b' })).toBe('a-b-$(MISSING)');
    expect(expand('$$(A) costs $$5', { A: 'a' })).toBe('$(A) costs $5');
  });

  test('quantities', () => {
    expect(parseQuantity('128Mi')).toBe(128 * 2 ** 20);
    expect(parseQuantity('1G')).toBe(1e9);
    expect(parseQuantity('500m')).toBe(0.5);
    expect(parseQuantity('1e3')).toBe(1000);
    expect(parseQuantity('12parsecs')).toBeUndefined();
  });
});
