/**
 * Equality- and set-based label selectors as the API server understands them
 * (`a=b,c!=d,e`, `!f`, `g in (x,y)`, `h notin (z)`), for the in-memory client and local mode.
 */
export type Requirement = { key: string; op: 'exists' | 'notexists' } | { key: string; op: 'in' | 'notin'; values: string[] };

export class SelectorError extends Error {
  override name = 'SelectorError';
}

const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]{0,61}[a-z0-9A-Z])?$/;
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += ch;
  }
  parts.push(current);
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

function checkKey(key: string): string {
  if (!KEY.test(key) || key.length > 317) throw new SelectorError(`invalid label key "${key}"`);
  return key;
}

function checkValue(value: string): string {
  if (!VALUE.test(value)) throw new SelectorError(`invalid label value "${value}"`);
  return value;
}

export function parseLabelSelector(text: string | undefined): Requirement[] {
  if (!text || text.trim() === '') return [];
  return splitTopLevel(text).map((part): Requirement => {
    let m = /^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part);
    if (m) {
      const values = m[3]
        .split(',')
        .map((v) => v.trim())
        .filter((v) => v !== '')
        .map(checkValue);
      return { key: checkKey(m[1]), op: m[2] as 'in' | 'notin', values };
    }
    m = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(part);
    if (m) return { key: checkKey(m[1]), op: m[2] === '!=' ? 'notin' : 'in', values: [checkValue(m[3])] };
    m = /^!\s*(\S+)$/.exec(part);
    if (m) return { key: checkKey(m[1]), op: 'notexists' };
    if (/^\S+$/.test(part)) return { key: checkKey(part), op: 'exists' };
    throw new SelectorError(`invalid label selector "${part}"`);
  });
}

export function matchesSelector(labels: Record<string, string> | undefined, reqs: Requirement[]): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    switch (r.op) {
      case 'exists':
        return has;
      case 'notexists':
        return !has;
      case 'in':
        return has && r.values.includes(l[r.key]);
      case 'notin':
        return !has || !r.values.includes(l[r.key]);
    }
  });
}

/** Field selectors: only `path=value` and `path!=value` on dotted paths, as the API server allows. */
export function matchesFieldSelector(obj: unknown, text: string | undefined): boolean {
  if (!text) return true;
  return splitTopLevel(text).every((part) => {
    const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw new SelectorError(`invalid field selector "${part}"`);
    let v: unknown = obj;
    for (const seg of m[1].split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[seg] : undefined;
    const actual = v === undefined || v === null ? '' : String(v);
    return m[2] === '!=' ? actual !== m[3] : actual === m[3];
  });
}
