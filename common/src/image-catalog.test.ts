/**
 * The image catalog, as local mode and the e2e node agent use it: validation with errors naming
 * file and field, lookup and name rules, `{root}`, reloading, Kubernetes' override rules.
 */
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandLine, ImageCatalog, ImagesFileError, parseImagesFile, shortImageName } from './image-catalog';
import { projectRoot } from './paths';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'spawner-images-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const write = (name: string, content: unknown): string => {
  const file = join(dir, name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
};

const errorOf = (fn: () => unknown): ImagesFileError => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ImagesFileError) return err;
    throw err;
  }
  throw new Error('expected an ImagesFileError');
};

describe('images file validation', () => {
  it('names the file and the field for each problem', () => {
    const file = write('bad.json', {
      images: {
        ok: { command: ['node', 'x.js'] },
        'no-command': { args: ['a'] },
        'empty-command': { command: [] },
        'bad-env': { command: ['x'], env: { A: 1 } },
        typo: { command: ['x'], workdir: '/tmp' },
      },
    });
    const err = errorOf(() => ImageCatalog.load({ file, cwd: dir }));
    expect(err.message).toContain(file);
    expect(err.message).toContain('images.no-command: missing field "command"');
    expect(err.message).toContain('images.empty-command.command: must NOT have fewer than 1 items');
    expect(err.message).toContain('images.bad-env.env.A: must be string');
    expect(err.message).toContain('images.typo: unknown field "workdir"');
  });

  it('rejects JSON syntax errors, a missing images object and unknown top-level fields', () => {
    expect(errorOf(() => parseImagesFile('{', 'f.json')).message).toMatch(/^f\.json: not valid JSON/);
    expect(errorOf(() => parseImagesFile('{}', 'f.json')).message).toContain('(top level): missing field "images"');
    expect(errorOf(() => parseImagesFile('{"images":{},"extra":1}', 'f.json')).message).toContain(
      '(top level): unknown field "extra"',
    );
  });

  it('fails clearly when an explicitly given file does not exist', () => {
    expect(errorOf(() => ImageCatalog.load({ file: 'missing.json', cwd: dir })).message).toBe(
      `${join(dir, 'missing.json')}: images file not found`,
    );
  });

  it("accepts the e2e node agent's e2e/images.json", () => {
    const catalog = ImageCatalog.load({ file: join(projectRoot(), 'e2e', 'images.json'), builtins: false });
    for (const name of ['spawner-operator', 'spawner-sidecar', 'spawner-sweeper', 'spawner-api', 'spawner-test-app']) {
      expect(catalog.resolve(`ghcr.io/x/${name}:0.1.0`)?.workingDir).toBe(projectRoot());
    }
  });
});

describe('image lookup', () => {
  it('knows the bundled demo backend without any file, by exact and by short name', () => {
    const catalog = ImageCatalog.load({ cwd: dir });
    expect(catalog.file).toBeUndefined();
    for (const image of ['spawner-demo-backend', 'demo', 'ghcr.io/x/spawner-demo-backend:0.1.0', 'demo:latest']) {
      const resolved = catalog.resolve(image);
      expect(resolved?.command[0]).toBe(process.execPath);
      expect(resolved?.command[1]).toMatch(/dist\/examples\/demo-backend\/src\/main\.js$/);
    }
    expect(catalog.resolve('unknown')).toBeUndefined();
  });

  it('leaves the built-in entries out when asked (the node agent knows only its file)', () => {
    const file = write('images.json', { images: { app: { command: ['app'] } } });
    const catalog = ImageCatalog.load({ file, builtins: false });
    expect(catalog.resolve('demo')).toBeUndefined();
    expect(catalog.names()).toEqual(['app']);
  });

  it('reads spawner.local.json from the working directory; exact names first, file entries over built-ins', () => {
    write('spawner.local.json', {
      images: {
        'registry.example/team/app:2': { command: ['exact'] },
        app: { command: ['short'], args: ['--default'], env: { A: 'b' }, workingDir: 'sub' },
        demo: { command: ['my-demo'] },
      },
    });
    const catalog = ImageCatalog.load({ cwd: dir });
    expect(catalog.file).toBe(join(dir, 'spawner.local.json'));
    expect(catalog.resolve('registry.example/team/app:2')?.command).toEqual(['exact']);
    const app = catalog.resolve('other.example/app:1@sha256:abc');
    expect(app).toMatchObject({ key: 'app', command: ['short'], args: ['--default'], env: { A: 'b' } });
    expect(app?.workingDir).toBe(join(dir, 'sub'));
    expect(catalog.resolve('demo')?.command).toEqual(['my-demo']);
    expect(catalog.resolve('spawner-demo-backend')?.command[0]).toBe(process.execPath);
    expect(catalog.names()).toEqual(['app', 'demo', 'registry.example/team/app:2', 'spawner-demo-backend']);
  });

  it("{root} is the repository root in command, args, env and workingDir; the default workingDir is the file's", () => {
    const file = write('images.json', {
      images: {
        a: { command: ['node', '{root}/dist/a.js'], args: ['--x={root}'], env: { R: '{root}/r' }, workingDir: '{root}' },
        b: { command: ['b'] },
      },
    });
    const catalog = ImageCatalog.load({ file, root: '/repo', builtins: false });
    expect(catalog.resolve('a')).toMatchObject({
      command: ['node', '/repo/dist/a.js'],
      args: ['--x=/repo'],
      env: { R: '/repo/r' },
      workingDir: '/repo',
    });
    expect(catalog.resolve('b')?.workingDir).toBe(dir);
  });

  test.each([
    ['ghcr.io/x/spawner-demo-backend:0.1.0', 'spawner-demo-backend'],
    ['spawner-sidecar', 'spawner-sidecar'],
    ['localhost:5000/team/spawner-api:dev', 'spawner-api'],
    ['localhost:5000/a/b@sha256:00', 'b'],
    ['spawner-api@sha256:abc', 'spawner-api'],
    ['registry.example/a/b/spawner-api:1.2@sha256:abc', 'spawner-api'],
  ])('the short name of %s (registry, path, tag and digest dropped) is %s', (image, short) => {
    expect(shortImageName(image)).toBe(short);
  });
});

describe('reloading', () => {
  // Set explicitly: two writes within the file system's timestamp granularity would look alike.
  const touch = (file: string, seconds: number): void => utimesSync(file, seconds, seconds);

  it('picks up an image added to the file, and keeps the previous entries while the file does not parse', () => {
    const file = write('images.json', { images: { a: { command: ['a'] } } });
    touch(file, 1_000);
    const catalog = ImageCatalog.load({ file, builtins: false, reload: true });
    expect(catalog.resolve('b')).toBeUndefined();

    write('images.json', { images: { a: { command: ['a'] }, b: { command: ['b'] } } });
    touch(file, 2_000);
    expect(catalog.resolve('ghcr.io/x/b:1')?.command).toEqual(['b']);

    write('images.json', '{"images": {"a": ');
    touch(file, 3_000);
    expect(catalog.names()).toEqual(['a', 'b']);

    write('images.json', { images: { c: { command: ['c'] } } });
    touch(file, 4_000);
    expect(catalog.names()).toEqual(['c']);
  });

  it('does not reload unless asked', () => {
    const file = write('images.json', { images: { a: { command: ['a'] } } });
    touch(file, 1_000);
    const catalog = ImageCatalog.load({ file, builtins: false });
    write('images.json', { images: { b: { command: ['b'] } } });
    touch(file, 2_000);
    expect(catalog.names()).toEqual(['a']);
  });
});

describe('command line', () => {
  const image = { command: ['node', 'main.js'], args: ['--default'] };
  it('follows Kubernetes: command replaces the entrypoint and its default args, args replace the default args', () => {
    expect(commandLine(image)).toEqual(['node', 'main.js', '--default']);
    expect(commandLine(image, undefined, ['--a', 'b'])).toEqual(['node', 'main.js', '--a', 'b']);
    expect(commandLine(image, ['python3', 'app.py'])).toEqual(['python3', 'app.py']);
    expect(commandLine(image, ['sh', '-c'], ['echo hi'])).toEqual(['sh', '-c', 'echo hi']);
    expect(commandLine({ command: ['sh'] })).toEqual(['sh']);
  });
});
