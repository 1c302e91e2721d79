/**
 * The configuration reference cannot drift from the schema: every variable the schema reads
 * (CONFIG_VARIABLES) has a row in docs/configuration.md and a line in .env.example, and neither
 * names a variable the schema does not read. Families are written literally (`AUTH_<N>_ISSUER`)
 * in all three places.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CONFIG_VARIABLES } from '../src/config/config';

const ROOT = path.join(__dirname, '..');
const REFERENCE = 'docs/configuration.md';
const EXAMPLE = '.env.example';
const SCHEMA = 'src/config/config.ts (CONFIG_VARIABLES)';

/** An upper-case variable name; `<N>` stands for a family member's name. */
const VARIABLE = '[A-Z](?:[A-Z0-9_]|<[A-Z]+>)*';
const BACKTICKED_VARIABLE = new RegExp('`(' + VARIABLE + ')`', 'g');
/** `NAME=…` or `# NAME=…` at the start of a line: set, or shown commented out. */
const EXAMPLE_LINE = new RegExp('^#?\\s*(' + VARIABLE + ')=');

function cellsOf(line: string): string[] {
  return line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim());
}

/**
 * The variables of a Markdown page: the backticked names in the first column of every table
 * whose first header cell is "variable". Other tables (statuses, metrics) are not read.
 */
function documentedVariables(markdown: string): string[] {
  const names: string[] = [];
  let inReference = false;
  let previousWasTable = false;
  for (const line of markdown.split('\n')) {
    const isTable = line.trimStart().startsWith('|');
    if (!isTable) {
      inReference = false;
      previousWasTable = false;
      continue;
    }
    const [first = ''] = cellsOf(line);
    if (!previousWasTable) inReference = first.toLowerCase() === 'variable';
    previousWasTable = true;
    if (!inReference || /^:?-+:?$/.test(first)) continue;
    for (const match of first.matchAll(BACKTICKED_VARIABLE)) names.push(match[1] ?? '');
  }
  return names;
}

/** The variables of an env file: every `NAME=` or `# NAME=` line. */
function exampleVariables(envFile: string): string[] {
  return envFile
    .split('\n')
    .map((line) => EXAMPLE_LINE.exec(line.trim())?.[1])
    .filter((name): name is string => name !== undefined);
}

/** One line per name that one side has and the other lacks, saying which file to fix. */
function drift(read: readonly string[], written: readonly string[], file: string): string[] {
  const readSet = new Set(read);
  const writtenSet = new Set(written);
  return [
    ...[...readSet]
      .filter((name) => !writtenSet.has(name))
      .map((name) => `${file} lacks ${name}, which ${SCHEMA} reads`),
    ...[...writtenSet]
      .filter((name) => !readSet.has(name))
      .map((name) => `${file} names ${name}, which ${SCHEMA} does not read`),
  ].sort();
}

describe('the configuration reference', () => {
  test('when a page has a variable table among other tables, then only the first column of the variable table is read', () => {
    const page = [
      '| variable | meaning | default |',
      '| --- | --- | --- |',
      '| `PORT` / `HOST` | main listener; `NOT_A_VARIABLE` in another column is not read | `8080` |',
      '| `AUTH_<N>_ISSUER` | the issuer of provider `<n>` | required |',
      '',
      '| status | meaning |',
      '| --- | --- |',
      '| `STATUS_CODE` | not a variable table |',
    ].join('\n');
    expect(documentedVariables(page)).toEqual(['PORT', 'HOST', 'AUTH_<N>_ISSUER']);
  });

  test('when an env file sets some variables and shows others commented out, then both are read, prose is not', () => {
    const file = [
      '# Prose that mentions PORT and CORS_ORIGINS=… in passing is not a line of its own.',
      'CARDSCAN_API_KEY=secret_test_replace_me',
      '# AUTH_<N>_ISSUER=https://login.example.com/',
      '#   LOG_LEVEL=info',
    ].join('\n');
    expect(exampleVariables(file)).toEqual(['CARDSCAN_API_KEY', 'AUTH_<N>_ISSUER', 'LOG_LEVEL']);
  });

  test(`when the schema reads a variable, then ${REFERENCE} documents it, and documents nothing else`, () => {
    const page = readFileSync(path.join(ROOT, REFERENCE), 'utf8');
    expect(drift(CONFIG_VARIABLES, documentedVariables(page), REFERENCE)).toEqual([]);
  });

  test(`when the schema reads a variable, then ${EXAMPLE} shows it, and shows nothing else`, () => {
    const file = readFileSync(path.join(ROOT, EXAMPLE), 'utf8');
    expect(drift(CONFIG_VARIABLES, exampleVariables(file), EXAMPLE)).toEqual([]);
  });
});
