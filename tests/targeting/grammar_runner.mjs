// Runs the browser's filter parser (static/switchboard/filter_language.js) in Node, without a
// page: `node grammar_runner.mjs CASES.json` prints, as JSON, one result per case of the file's
// "cases" (in order): {tree, describe} when the expression parses (tree is null for a blank
// one), {error: {column, message}} for a TextError, {crash} for any other exception.
// tests/targeting/test_grammar_cases.py compares these with the Python parser.
import {readFileSync} from "node:fs";
import {dirname, resolve} from "node:path";
import {fileURLToPath} from "node:url";
import vm from "node:vm";

const here = dirname(fileURLToPath(import.meta.url));
const source = resolve(here, "../../static/switchboard/filter_language.js");

// The script only assigns window.switchboardFilterLanguage: a bare object is window enough.
const sandbox = {window: {}};
vm.runInNewContext(readFileSync(source, "utf8"), sandbox, {filename: source});
const language = sandbox.window.switchboardFilterLanguage;

// The canonical text of a tree, written as agents/filters describe() writes it, with the
// browser's own quoteValue and escapeSlashes.
function describe(node) {
  if (node === null) return "";
  if (node.type === "fact") {
    if (node.op === "=~" || node.op === "!~") {
      return node.fact + node.op + "/" + language.escapeSlashes(node.value) + "/";
    }
    return node.fact + node.op + language.quoteValue(node.value);
  }
  if (node.type === "name") {
    if (node.regex) return node.kind + ":/" + language.escapeSlashes(node.value) + "/";
    return node.kind + ":" + language.quoteValue(node.value);
  }
  if (node.type === "not") {
    const inner = describe(node.item);
    return node.item.type === "and" || node.item.type === "or" ? "not (" + inner + ")" : "not " + inner;
  }
  const other = node.type === "and" ? "or" : "and";
  return node.items
    .map((item) => (item.type === other ? "(" + describe(item) + ")" : describe(item)))
    .join(" " + node.type + " ");
}

const {cases} = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = cases.map(({expression}) => {
  try {
    const tree = language.parse(expression);
    return {tree, describe: describe(tree)};
  } catch (err) {
    if (err instanceof language.TextError) return {error: {column: err.column, message: err.message}};
    return {crash: String(err && err.stack ? err.stack : err)};
  }
});
process.stdout.write(JSON.stringify(results));
