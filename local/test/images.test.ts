/** The images file: validation with errors naming file and field, lookup rules, override rules. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandLine, ImageCatalog, ImagesFileError, parseImagesFile, shortImageName } from '../src/images';

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

  it('short names drop registry, path, tag and digest', () => {
    expect(shortImageName('ghcr.io/x/spawner-demo-backend:0.1.0')).toBe('spawner-demo-backend');
    expect(shortImageName('localhost:5000/a/b@sha256:00')).toBe('b');
    expect(shortImageName('plain')).toBe('plain');
  });
});

describe('command line', () => {
  const image = { key: 'x', command: ['node', 'main.js'], args: ['--default'], env: {}, workingDir: '/', source: 'test' };
  it('follows the container runtime: command replaces the entrypoint and its default args, args replace the default args', () => {
    expect(commandLine(image)).toEqual(['node', 'main.js', '--default']);
    expect(commandLine(image, undefined, ['--a', 'b'])).toEqual(['node', 'main.js', '--a', 'b']);
    expect(commandLine(image, ['python3', 'app.py'])).toEqual(['python3', 'app.py']);
    expect(commandLine(image, ['sh', '-c'], ['echo hi'])).toEqual(['sh', '-c', 'echo hi']);
  });
});
