/**
 * iPXE scripts the boot service answers (pure rendering).
 *
 * - A host being provisioned gets its installer: `kernel <url> <args>`,
 *   `initrd <url>`, `boot`. The per-host arguments are `talos.config=<config
 *   URL>` (Talos fetches its machine config there) and `dv.callback=<callback
 *   URL>` (the installer reports there), both carrying the one-time token.
 * - A host being released whose wipe was requested gets the wipe image:
 *   `dv.wipe.callback=<callback URL>` with the one-time wipe token.
 * - Anything else (unknown MAC, host not provisioning, install already
 *   reported) gets `exit`: iPXE returns to the firmware, which boots the next
 *   device, the local disk. This is what ends a netboot loop after install
 *   even if a BMC's one-time boot override was not honoured.
 *
 * iPXE expands `${...}` in every line and reads `||`/`&&` as operators, so
 * nothing of the request is written into a script unchecked: URLs are ours
 * (ids percent-encoded, token base64url), echo text is reduced to safe
 * characters.
 */
export interface InstallScript {
  readonly imageName: string;
  readonly hostName: string;
  readonly kernelUrl: string;
  readonly initramfsUrl: string;
  readonly kernelArgs: readonly string[];
  readonly configUrl: string;
  readonly callbackUrl: string;
}

export const IPXE_CONTENT_TYPE = "text/plain; charset=utf-8";

export function renderInstallScript(script: InstallScript): string {
  for (const url of [script.kernelUrl, script.initramfsUrl, script.configUrl, script.callbackUrl]) assertScriptSafe(url);
  for (const arg of script.kernelArgs) assertScriptSafe(arg);
  const args = [...script.kernelArgs, `talos.config=${script.configUrl}`, `dv.callback=${script.callbackUrl}`];
  return [
    "#!ipxe",
    `echo Dataverket: installing ${echoSafe(script.imageName)} on ${echoSafe(script.hostName)}`,
    `kernel ${script.kernelUrl} ${args.join(" ")}`,
    `initrd ${script.initramfsUrl}`,
    "boot",
    "",
  ].join("\n");
}

export interface WipeScript {
  readonly hostName: string;
  readonly kernelUrl: string;
  readonly initramfsUrl: string;
  readonly kernelArgs: readonly string[];
  readonly callbackUrl: string;
}

/** A host being released gets the wipe image; its one argument of its own is `dv.wipe.callback=<callback URL>` with the one-time wipe token. */
export function renderWipeScript(script: WipeScript): string {
  for (const url of [script.kernelUrl, script.initramfsUrl, script.callbackUrl]) assertScriptSafe(url);
  for (const arg of script.kernelArgs) assertScriptSafe(arg);
  return [
    "#!ipxe",
    `echo Dataverket: wiping the disks of ${echoSafe(script.hostName)}`,
    `kernel ${script.kernelUrl} ${[...script.kernelArgs, `dv.wipe.callback=${script.callbackUrl}`].join(" ")}`,
    `initrd ${script.initramfsUrl}`,
    "boot",
    "",
  ].join("\n");
}

/** Boot the next device (the disk). No reason is given: an unauthenticated caller must not learn which MACs the inventory holds. */
export function renderExitScript(): string {
  return "#!ipxe\nexit\n";
}

function echoSafe(text: string): string {
  return text.replace(/[^A-Za-z0-9._:/@+-]/g, "_").slice(0, 100);
}

function assertScriptSafe(value: string): void {
  if (/[\s$]|\|\||&&/.test(value)) throw new Error(`refusing to put ${JSON.stringify(value)} into an iPXE script`);
}
