import { describe, expect, it } from "vitest";
import { cell, formatAge, formatJson, formatKeyValues, formatTable, parseOutputFormat, render } from "../../../cli/core/output.ts";
import { CliError } from "../../../cli/core/errors.ts";
import { captureIo } from "./support.ts";

describe("formatTable", () => {
  const columns = [
    { header: "id", value: (r: Record<string, unknown>) => r.id },
    { header: "name", value: (r: Record<string, unknown>) => r.name },
    { header: "status", value: (r: Record<string, unknown>) => r.status },
  ];

  it("pads every column but the last to its widest cell, headers upper-case, three spaces apart", () => {
    const text = formatTable([{ id: "t-1", name: "acme", status: "active" }, { id: "tenant-22", name: "b", status: "suspended" }], columns);
    expect(text).toBe(
      "ID          NAME   STATUS\n" +
      "t-1         acme   active\n" +
      "tenant-22   b      suspended\n",
    );
  });

  it("shows missing values as - and never lets a value break the row or reach the terminal raw", () => {
    const text = formatTable([{ id: "x", name: "evil\nrow\u001b[31m", status: null }], columns);
    const lines = text.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe("x    evil\\nrow\\u001b[31m   -");
  });

  it("prints only the header row for no rows", () => {
    expect(formatTable([], columns)).toBe("ID   NAME   STATUS\n");
  });
});

describe("cells", () => {
  it("formats arrays, objects, dates and empties", () => {
    expect(cell(undefined)).toBe("-");
    expect(cell("")).toBe("-");
    expect(cell([])).toBe("-");
    expect(cell(["a", "b"])).toBe("a,b");
    expect(cell({ a: 1 })).toBe('{"a":1}');
    expect(cell(new Date("2025-01-02T03:04:05.000Z"))).toBe("2025-01-02T03:04:05.000Z");
    expect(cell(0)).toBe("0");
  });

  it("aligns key/value lines", () => {
    expect(formatKeyValues([["subject", "admin"], ["roles", undefined]])).toBe("subject: admin\nroles:   -\n");
  });
});

describe("formatJson", () => {
  it("prints the value as given, indented, one trailing newline", () => {
    const value = { id: "t1", name: "acme", nested: { list: [1, 2] }, nothing: null };
    const text = formatJson(value);
    expect(text.endsWith("}\n")).toBe(true);
    expect(JSON.parse(text)).toEqual(value);
    expect(text).toBe(JSON.stringify(value, null, 2) + "\n");
  });
});

describe("formatAge", () => {
  const now = Date.parse("2025-06-01T12:00:00Z");
  it.each([
    ["2025-06-01T11:59:30Z", "30s"],
    ["2025-06-01T11:55:00Z", "5m"],
    ["2025-06-01T09:00:00Z", "3h"],
    ["2025-05-20T12:00:00Z", "12d"],
    ["2021-06-01T12:00:00Z", "4y"],
  ])("%s is %s ago", (iso, age) => {
    expect(formatAge(iso, now)).toBe(age);
  });
  it("is - when unknown", () => {
    expect(formatAge(undefined, now)).toBe("-");
    expect(formatAge("not a date", now)).toBe("-");
  });
});

describe("render", () => {
  const columns = [{ header: "name", value: (r: { name: string }) => r.name }];

  it("json prints the API value as-is, not the table rows", () => {
    const io = captureIo();
    const apiValue = [{ name: "a", extra: { kept: true } }];
    render(io, "json", apiValue, { rows: apiValue, columns });
    expect(JSON.parse(io.stdout)).toEqual(apiValue);
    expect(io.stderr).toBe("");
  });

  it("an empty table says so on stderr and leaves stdout empty", () => {
    const io = captureIo();
    render(io, "table", [], { rows: [], columns, empty: "No tenants." });
    expect(io.stdout).toBe("");
    expect(io.stderr).toBe("No tenants.\n");
  });

  it("an empty JSON list is still []", () => {
    const io = captureIo();
    render(io, "json", [], { rows: [], columns, empty: "No tenants." });
    expect(io.stdout).toBe("[]\n");
  });
});

describe("parseOutputFormat", () => {
  it("accepts table and json in any case, refuses the rest as a usage error", () => {
    expect(parseOutputFormat("JSON")).toBe("json");
    expect(parseOutputFormat("table")).toBe("table");
    expect(() => parseOutputFormat("yaml")).toThrow(CliError);
    try {
      parseOutputFormat("yaml");
    } catch (error) {
      expect((error as CliError).exitCode).toBe(1);
    }
  });
});
