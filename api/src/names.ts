/**
 * Backend names. Random names for plain creates; for get-or-create a name derived from the key,
 * so that the API server's "name already exists" is the lock that makes concurrent callers agree.
 */
import { createHash, randomInt } from 'node:crypto';

export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const NAME_PREFIX = 'spawner-';
/** Keyed names get their own prefix, so a random name can never take a key's name. */
export const KEY_NAME_PREFIX = 'spawner-k-';
/** 128 bits of SHA-256: collisions are out of reach, and the label value stays under 63. */
const KEY_HASH_HEX = 32;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const RANDOM_LENGTH = 12;

export const isDnsLabel = (s: string): boolean => s.length <= 63 && DNS_LABEL.test(s);

/** `spawner-<12 random [a-z0-9]>`: about 62 bits, no hyphen, so never shaped like a keyed name. */
export function randomName(): string {
  let s = '';
  for (let i = 0; i < RANDOM_LENGTH; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return NAME_PREFIX + s;
}

/**
 * Keys arrive as JSON strings, which may hold lone surrogates; UTF-8 (and the API server) would
 * turn those into U+FFFD, so two different keys would meet in one hash and the stored key would
 * never match again. Normalising first keeps key, hash and annotation consistent.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
export const normalizeKey = (key: string): string => key.replace(LONE_SURROGATE, '\uFFFD');

/**
 * The key's hash, scoped by namespace. The separator cannot occur in a namespace (a DNS label),
 * so ("a", "b/c") and ("a/b", "c") cannot collide by concatenation.
 */
export function keyHash(namespace: string, key: string): string {
  return createHash('sha256')
    .update(`${namespace}/${normalizeKey(key)}`, 'utf8')
    .digest('hex')
    .slice(0, KEY_HASH_HEX);
}

export const keyName = (namespace: string, key: string): string => KEY_NAME_PREFIX + keyHash(namespace, key);
