// The compound filter language (agents/filters/compound.py), read in the browser: the filter
// builder parses what was typed into its rows, and writes rows back as text. The server's
// parser stays the judge (the preview reports its errors); this one only needs to read what
// that one accepts the same way, and refuse its syntax errors. window.switchboardFilterLanguage.
(function () {
  "use strict";
  const OPERATORS = ["==", "!=", "=~", "!~", "<", ">", "<=", ">="];
  const KEYWORDS = ["and", "or", "not"];
  const PREFIXES = ["class", "agent", "identity"];
  const OP_CHARS = "=!<>~";
  const WORD = /[A-Za-z0-9_][A-Za-z0-9_.:@+\-]*/y;
  const FACT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.\-]*$/;
  const BARE_VALUE = /^[A-Za-z0-9_][A-Za-z0-9_.:@+\-]*$/;
  const MAX_PARSE_DEPTH = 64;
  // Whitespace as Python's str.isspace() has it (not JavaScript's \s, which takes U+FEFF and
  // leaves U+001C-U+001F and U+0085), so both parsers split and strip a text the same way.
  const IS_SPACE = /[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
  const BLANK = /^[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;

  class TextError extends Error {
    constructor(message, column) { super(message); this.column = column; }
  }

  function tokenize(text) {
    const tokens = [];
    const n = text.length;
    // Columns count code points, as Python's do: a character outside the BMP is one column.
    const columns = [1];
    for (let k = 0; k < n; k += 1) {
      const high = (text.charCodeAt(k) & 0xfc00) === 0xd800;
      const pair = high && (text.charCodeAt(k + 1) & 0xfc00) === 0xdc00;
      columns.push(columns[k] + (pair ? 0 : 1));
    }
    let i = 0;
    while (i < n) {
      const ch = text[i];
      const column = columns[i];
      if (IS_SPACE.test(ch)) {
        i += 1;
      } else if (ch === "(" || ch === ")") {
        tokens.push({kind: ch === "(" ? "LPAREN" : "RPAREN", text: ch, column});
        i += 1;
      } else if (OP_CHARS.includes(ch)) {
        let j = i;
        while (j < n && OP_CHARS.includes(text[j])) j += 1;
        const op = text.slice(i, j);
        if (op === "!") tokens.push({kind: "NOT", text: op, column});
        else if (op === "=" || OPERATORS.includes(op)) tokens.push({kind: "OP", text: op, column});
        else throw new TextError("unknown operator " + op, column);
        i = j;
      } else if (ch === "/") {
        let j = i + 1;
        while (j < n && text[j] !== "/") j += text[j] === "\\" ? 2 : 1;
        if (j >= n) throw new TextError("unterminated regex", column);
        tokens.push({kind: "REGEX", text: text.slice(i + 1, j), column});
        i = j + 1;
      } else if (ch === '"' || ch === "'") {
        let j = i + 1;
        let out = "";
        while (j < n && text[j] !== ch) {
          if (text[j] === "\\" && j + 1 < n) j += 1;
          out += text[j];
          j += 1;
        }
        if (j >= n) throw new TextError("unterminated string", column);
        tokens.push({kind: "STRING", text: out, column});
        i = j + 1;
      } else {
        WORD.lastIndex = i;
        const match = WORD.exec(text);
        if (!match) throw new TextError("unexpected character " + String.fromCodePoint(text.codePointAt(i)), column);
        const lower = match[0].toLowerCase();
        tokens.push({kind: KEYWORDS.includes(lower) ? lower.toUpperCase() : "WORD", text: match[0], column});
        i = WORD.lastIndex;
      }
    }
    tokens.push({kind: "END", text: "", column: columns[n]});
    return tokens;
  }

  const isRegexLiteral = (v) => v.length >= 2 && v.startsWith("/") && v.endsWith("/");

  function nameTerm(kind, value, regex, column) {
    if (!regex && isRegexLiteral(value)) { regex = true; value = value.slice(1, -1); }
    if (!regex && !value) throw new TextError("empty " + kind + " name", column);
    return {type: "name", kind, value, regex};
  }

  function factTerm(fact, op, value, regex, column) {
    if (op === "=") op = "==";
    if (!OPERATORS.includes(op)) throw new TextError("unknown operator " + op, column);
    if (!FACT_NAME.test(fact)) throw new TextError("invalid fact name " + fact, column);
    if (regex) {
      if (op === "==" || op === "=~") op = "=~";
      else if (op === "!=" || op === "!~") op = "!~";
      else throw new TextError("operator " + op + " cannot take a regex value", column);
    }
    return {type: "fact", fact, op, value};
  }

  // The expression tree of ``text``: {type: fact|name|not|and|or}; null for blank text.
  function parse(text) {
    if (BLANK.test(text)) return null;
    const tokens = tokenize(text);
    let pos = 0;
    const peek = () => tokens[Math.min(pos, tokens.length - 1)];
    const take = () => { const tok = peek(); pos += 1; return tok; };

    function expr(depth) {
      const items = [and(depth)];
      while (peek().kind === "OR") { take(); items.push(and(depth)); }
      return items.length === 1 ? items[0] : {type: "or", items};
    }
    function and(depth) {
      const items = [unary(depth)];
      while (peek().kind === "AND") { take(); items.push(unary(depth)); }
      return items.length === 1 ? items[0] : {type: "and", items};
    }
    function unary(depth) {
      if (depth + 1 > MAX_PARSE_DEPTH) throw new TextError("filter nests too deep", peek().column);
      const tok = peek();
      if (tok.kind === "NOT") { take(); return {type: "not", item: unary(depth + 1)}; }
      if (tok.kind === "LPAREN") {
        take();
        const inner = expr(depth + 1);
        if (peek().kind !== "RPAREN") throw new TextError("expected )", peek().column);
        take();
        return inner;
      }
      return term();
    }
    function term() {
      const tok = take();
      if (tok.kind === "REGEX") return nameTerm("class", tok.text, true, tok.column);
      if (tok.kind === "STRING" && peek().kind !== "OP") return nameTerm("class", tok.text, false, tok.column);
      if (tok.kind !== "WORD" && tok.kind !== "STRING") throw new TextError("expected a filter term", tok.column);
      if (peek().kind === "OP") {
        const op = take();
        const value = take();
        if (!["WORD", "STRING", "REGEX", "AND", "OR", "NOT"].includes(value.kind)) {
          throw new TextError("expected a value", value.column);
        }
        return factTerm(tok.text, op.text, value.text, value.kind === "REGEX", op.column);
      }
      const colon = tok.text.indexOf(":");
      if (tok.kind === "WORD" && colon >= 0) {
        const kind = tok.text.slice(0, colon).toLowerCase();
        const rest = tok.text.slice(colon + 1);
        if (PREFIXES.includes(kind) && !rest.startsWith(":")) {
          if (!rest && peek().kind === "REGEX" && peek().column === tok.column + tok.text.length) {
            const regex = take();
            return nameTerm(kind, regex.text, true, regex.column);
          }
          if (!rest && peek().kind === "STRING") return nameTerm(kind, take().text, false, tok.column);
          return nameTerm(kind, rest, false, tok.column);
        }
      }
      return nameTerm("class", tok.text, false, tok.column);
    }

    const result = expr(0);
    if (peek().kind !== "END") throw new TextError("unexpected " + peek().text, peek().column);
    return result;
  }

  function escapeSlashes(pattern) {
    let out = "";
    let escaped = false;
    for (const ch of pattern) {
      if (escaped) { out += ch; escaped = false; }
      else if (ch === "\\") { out += ch; escaped = true; }
      else if (ch === "/") out += "\\/";
      else out += ch;
    }
    return out;
  }

  function quoteValue(value) {
    if (BARE_VALUE.test(value) && !KEYWORDS.includes(value.toLowerCase())) return value;
    return '"' + value.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  }

  window.switchboardFilterLanguage = {
    parse, quoteValue, escapeSlashes, isRegexLiteral, TextError, FACT_NAME, OPERATORS,
  };
})();
