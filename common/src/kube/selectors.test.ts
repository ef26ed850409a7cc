import { matchesFieldSelector, matchesSelector, parseLabelSelector, SelectorError } from './selectors';

describe('label selectors', () => {
  const labels = { app: 'web', tier: 'front', 'spawner.dev/key-hash': 'abc' };
  it.each([
    ['app=web', true],
    ['app==web,tier=front', true],
    ['app!=web', false],
    ['app in (api, web)', true],
    ['tier notin (front)', false],
    ['spawner.dev/key-hash', true],
    ['!missing', true],
    ['missing', false],
    ['', true],
  ])('%s → %s', (sel, expected) => {
    expect(matchesSelector(labels, parseLabelSelector(sel))).toBe(expected);
  });

  it.each(['a=b=c', 'in (x)', 'a=b c', '-bad=x'])('rejects %s', (sel) => {
    expect(() => parseLabelSelector(sel)).toThrow(SelectorError);
  });

  it('matches field selectors on dotted paths', () => {
    const obj = { spec: { nodeName: 'n1' }, metadata: { name: 'p' } };
    expect(matchesFieldSelector(obj, 'spec.nodeName=n1')).toBe(true);
    expect(matchesFieldSelector(obj, 'spec.nodeName!=n1')).toBe(false);
    expect(matchesFieldSelector(obj, 'metadata.name=p,spec.nodeName=n2')).toBe(false);
  });
});
