// Starts a dv* bin: registers tsx's ESM loader (the project runs its
// TypeScript through tsx, no build step), then hands argv to cli/main.ts.
import { register } from "tsx/esm/api";

export async function launch(bin) {
  // `dv tenant list | head -1`: a reader that goes away is not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error) => {
      if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw error;
    });
  }
  register();
  const { main } = await import("../main.ts");
  process.exitCode = await main(bin, process.argv.slice(2));
}
