import { usageError } from "./errors.ts";

export const OUTPUT_FORMATS = ["table", "json"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function parseOutputFormat(value: string): OutputFormat {
  const format = value.trim().toLowerCase();
  if ((OUTPUT_FORMATS as readonly string[]).includes(format)) return format as OutputFormat;
  throw usageError(`unknown output format ${JSON.stringify(value)}: use one of ${OUTPUT_FORMATS.join(", ")}`);
}

/** Where a command writes; tests pass their own. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

export interface Column<T> {
  readonly header: string;
  readonly value: (row: T) => unknown;
}

/**
 * Columns padded to the widest cell, three spaces apart, headers upper-case,
 * the last column unpadded (kubectl's layout, so `awk '{print $1}'` works).
 * Missing values show as `-`; control characters are escaped so a value can
 * neither break a row nor send escape sequences to the terminal.
 */
export function formatTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = [columns.map((c) => c.header.toUpperCase()), ...rows.map((row) => columns.map((c) => cell(c.value(row))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells
    .map((r) =>
      r
        .map((value, i) => (i === r.length - 1 ? value : value.padEnd(widths[i]!)))
        .join("   ")
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}

/** `key: value` lines, keys aligned. */
export function formatKeyValues(pairs: ReadonlyArray<readonly [string, unknown]>): string {
  const width = Math.max(0, ...pairs.map(([key]) => key.length + 1));
  return pairs.map(([key, value]) => `${`${key}:`.padEnd(width)} ${cell(value)}\n`).join("");
}

/** Stable JSON for scripts: the value as given, two-space indented, one trailing newline. */
export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

export function cell(value: unknown): string {
  if (value === null || value === undefined || value === "") return "-";
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.length ? value.map(cell).join(",") : "-";
  if (typeof value === "object") return escapeControl(JSON.stringify(value));
  return escapeControl(String(value));
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

function escapeControl(text: string): string {
  return text.replace(CONTROL, (c) => {
    switch (c) {
      case "\n":
        return "\\n";
      case "\t":
        return "\\t";
      case "\r":
        return "\\r";
      default:
        return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
    }
  });
}

/** How long ago `iso` was, kubectl-style: 45s, 12m, 3h, 5d, 2y. `-` when unknown. */
export function formatAge(iso: unknown, now: number = Date.now()): string {
  if (typeof iso !== "string" && !(iso instanceof Date)) return "-";
  const at = new Date(iso).getTime();
  if (Number.isNaN(at)) return "-";
  const seconds = Math.max(0, Math.floor((now - at) / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 120) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (days < 730) return `${days}d`;
  return `${Math.floor(days / 365)}y`;
}

/**
 * Prints `value` as JSON, or as a table of `rows(value)` with `columns`.
 * `empty` is printed to stderr when a table would have no rows, so stdout of
 * a script stays parseable and a person still sees why nothing was printed.
 */
export function render<T>(
  io: Io,
  format: OutputFormat,
  value: unknown,
  table: { rows: readonly T[]; columns: readonly Column<T>[]; empty?: string },
): void {
  if (format === "json") {
    io.out(formatJson(value));
    return;
  }
  if (table.rows.length === 0 && table.empty) {
    io.err(`${table.empty}\n`);
    return;
  }
  io.out(formatTable(table.rows, table.columns));
}
