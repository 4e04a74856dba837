// Parse and validate an AsyncAPI document with the official @asyncapi/parser.
//
// Usage: node validate.mjs PATH
// Prints every error and warning diagnostic as `severity code at path:line: message` (info
// and hint diagnostics are only counted).
// Exits 0 when the document parses with no error-severity diagnostic, 1 when it does not,
// 2 on a usage error or an unreadable file.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import parserPackage from '@asyncapi/parser';

const { Parser, DiagnosticSeverity } = parserPackage;

const SEVERITY_NAMES = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

function describe(diagnostic) {
  const severity = SEVERITY_NAMES[diagnostic.severity] ?? `severity ${diagnostic.severity}`;
  const where = diagnostic.path && diagnostic.path.length > 0 ? diagnostic.path.join('.') : '(root)';
  const line = diagnostic.range ? `:${diagnostic.range.start.line + 1}` : '';
  return `${severity} ${diagnostic.code} at ${where}${line}: ${diagnostic.message}`;
}

async function main(argv) {
  if (argv.length !== 3) {
    console.error('usage: node validate.mjs PATH_TO_ASYNCAPI_DOCUMENT');
    return 2;
  }
  const path = resolve(argv[2]);
  let text;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    console.error(`cannot read ${path}: ${error.message}`);
    return 2;
  }
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text, {
    source: pathToFileURL(path).href,
  });
  const shown = diagnostics.filter((d) => d.severity <= DiagnosticSeverity.Warning);
  for (const diagnostic of shown) {
    console.error(describe(diagnostic));
  }
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  const hidden = diagnostics.length - shown.length;
  if (document === undefined || errors.length > 0) {
    console.error(`${path}: INVALID (${errors.length} error(s), ${diagnostics.length} diagnostic(s))`);
    return 1;
  }
  const version = document.version();
  const channels = document.channels().length;
  const operations = document.operations().length;
  const messages = document.messages().length;
  console.log(
    `${path}: valid AsyncAPI ${version} (${channels} channels, ${operations} operations, ` +
      `${messages} messages, ${shown.length} warning(s), ${hidden} info/hint)`,
  );
  return 0;
}

process.exitCode = await main(process.argv);
