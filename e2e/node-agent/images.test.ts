import { commandLine, imageKey, parseImageMap } from './images';

describe('image map', () => {
  test.each([
    ['ghcr.io/x/spawner-sidecar:0.1.0', 'spawner-sidecar'],
    ['spawner-sidecar', 'spawner-sidecar'],
    ['localhost:5000/team/spawner-api:dev', 'spawner-api'],
    ['spawner-api@sha256:abc', 'spawner-api'],
    ['registry.example/a/b/spawner-api:1.2@sha256:abc', 'spawner-api'],
  ])('%s is looked up as %s', (image, key) => {
    expect(imageKey(image)).toBe(key);
  });

  test('command replaces the entrypoint and drops the default args; args are appended', () => {
    const entry = { command: ['node', 'main.js'], args: ['--default'] };
    expect(commandLine(entry)).toEqual(['node', 'main.js', '--default']);
    expect(commandLine(entry, undefined, ['--port=1'])).toEqual(['node', 'main.js', '--port=1']);
    expect(commandLine(entry, ['sh', '-c', 'x'])).toEqual(['sh', '-c', 'x']);
    expect(commandLine(entry, ['sh'], ['-c', 'x'])).toEqual(['sh', '-c', 'x']);
  });

  test('{root} is the repository root; entries need a command', () => {
    expect(parseImageMap('{"a": {"command": ["node", "{root}/dist/a.js"]}}', '/repo').a.command).toEqual([
      'node',
      '/repo/dist/a.js',
    ]);
    expect(() => parseImageMap('{"a": {"command": []}}', '/repo')).toThrow(/non-empty "command"/);
  });
});
