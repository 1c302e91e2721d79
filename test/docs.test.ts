/**
 * The docs stay usable: the README stays a short front door, nothing points outside the
 * repository, and every test a doc cites as proof exists.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.join(__dirname, '..');
const README_MAX_LINES = 250;
/** Generated or installed trees, never written by hand. */
const SKIPPED_DIRS = new Set([
  '.git',
  'node_modules',
  'dist',
  'coverage',
  'bench-results',
  'test-artifacts',
]);
// Built from pieces so that this file does not match itself.
const OUTSIDE_REFERENCE = new RegExp(
  [['\\.\\.', 'shared'].join('/'), ['shared', 'design'].join('/')].join('|'),
);
/** A cited test: `test/x.test.ts › when …, then …`. */
const CITED_TEST = /`(test\/[\w./-]+\.test\.ts) › ([^`]+)`/g;
/** A Markdown link's target. */
const LINK = /\]\(([^)\s]+)\)/g;

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return SKIPPED_DIRS.has(name) ? [] : filesUnder(full);
    return [full];
  });
}

const relative = (file: string) => path.relative(ROOT, file);

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as `-`. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  let inCode = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) inCode = !inCode;
    const heading = inCode ? null : /^#{1,6} (.+)$/.exec(line);
    if (heading?.[1]) {
      anchors.add(
        heading[1]
          .toLowerCase()
          .replace(/[^\p{L}\p{N}\s_-]/gu, '')
          .replace(/\s/g, '-'),
      );
    }
  }
  return anchors;
}
const markdownFiles = filesUnder(ROOT).filter((file) => file.endsWith('.md'));
const docsPages = markdownFiles.filter((file) => relative(file).startsWith('docs/'));

describe('the docs', () => {
  test(`when the README is read, then it is a front door of at most ${README_MAX_LINES} lines`, () => {
    const lines = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n');
    expect(lines.length).toBeLessThanOrEqual(README_MAX_LINES);
  });

  test('when any file of the repository is read, then it names no path outside the repository', () => {
    const offenders = filesUnder(ROOT)
      .filter((file) => {
        const content = readFileSync(file);
        return !content.includes(0) && OUTSIDE_REFERENCE.test(content.toString('utf8'));
      })
      .map(relative);
    expect(offenders).toEqual([]);
  });

  test('when a Markdown page links to a file, then the link stays inside the repository', () => {
    const escaping = markdownFiles.flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(LINK)]
        .map((match) => match[1] ?? '')
        .filter((target) => !/^([a-z]+:|#)/i.test(target))
        .filter((target) => {
          const resolved = path.resolve(path.dirname(file), target.split('#')[0] ?? '');
          return path.relative(ROOT, resolved).startsWith('..');
        })
        .map((target) => `${relative(file)} → ${target}`),
    );
    expect(escaping).toEqual([]);
  });

  test('when a Markdown page links to a file of the repository, then that file exists', () => {
    const links = markdownFiles.flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(LINK)]
        .map((match) => match[1] ?? '')
        .filter((target) => !/^([a-z]+:|#)/i.test(target))
        .map((target) => ({
          from: relative(file),
          target,
          resolved: relative(path.resolve(path.dirname(file), target.split('#')[0] ?? '')),
        })),
    );
    expect(links.length).toBeGreaterThan(0);
    const missing = links
      .filter(({ resolved }) => !existsSync(path.join(ROOT, resolved)))
      .map(({ from, target }) => `${from} → ${target}`);
    expect(missing).toEqual([]);
  });

  test('when a Markdown page links to a heading of a page that exists, then that heading exists', () => {
    const broken = markdownFiles.flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(LINK)]
        .map((match) => match[1] ?? '')
        .filter((target) => !/^[a-z]+:/i.test(target) && target.includes('#'))
        .filter((target) => {
          const [page = '', anchor = ''] = target.split('#');
          const targetFile = page ? path.resolve(path.dirname(file), page) : file;
          if (!targetFile.endsWith('.md') || !existsSync(targetFile)) return false;
          return !anchorsOf(readFileSync(targetFile, 'utf8')).has(anchor);
        })
        .map((target) => `${relative(file)} → ${target}`),
    );
    expect(broken).toEqual([]);
  });

  test('when a doc cites a test as proof, then that test exists under that name', () => {
    const cited = docsPages.flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(CITED_TEST)].map(([, testFile = '', name = '']) => ({
        page: relative(file),
        testFile,
        name,
      })),
    );
    expect(cited.length).toBeGreaterThan(0);
    const missing = cited
      .filter(({ testFile, name }) => {
        const full = path.join(ROOT, testFile);
        return !existsSync(full) || !readFileSync(full, 'utf8').includes(name);
      })
      .map(({ page, testFile, name }) => `${page}: ${testFile} › ${name}`);
    expect(missing).toEqual([]);
  });
});
