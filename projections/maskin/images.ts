import type { ColumnType, Kysely, Selectable } from "kysely";
import type { RecordedEvent } from "../../adapters/eventstore/port.ts";
import { formatPosition } from "../../adapters/eventstore/position.ts";
import { IMAGE_EVENT_TYPES, imageEventSchemas, MASKIN_IMAGE_STREAM_PREFIX, type ImageVersionContent } from "../../domain/maskin/vm/index.ts";
import { defineProjection } from "../projection.ts";

/**
 * Maskin images (schema `maskin_images`): one row per immutable image
 * version (stream `maskin-image-<name>`, event `ImageVersionRegistered`).
 * A version never changes, so a row is written once; `content` is the
 * version's whole content (digest, format, source, OS family, guest init,
 * boot parts) as registered. Behind GET /v1/images and `dvce image list`.
 */

type Timestamp = ColumnType<Date, Date, Date>;
type Json<T> = ColumnType<T, string, string>;

export interface MaskinImageVersionsTable {
  name: string;
  version: string;
  digest: string;
  format: ImageVersionContent["format"];
  os_family: string;
  guest_init: ImageVersionContent["guestInit"];
  content: Json<ImageVersionContent>;
  registered_at: Timestamp;
  /** Position of the registering event within the image's stream. */
  stream_position: number;
  position: string;
}

export interface MaskinImageTables {
  image_versions: MaskinImageVersionsTable;
}

export type MaskinImageVersionRow = Selectable<MaskinImageVersionsTable>;

export const maskinImagesProjection = defineProjection<MaskinImageTables>({
  name: "maskin_images",
  version: 1,
  tables: ["image_versions"],
  eventTypes: IMAGE_EVENT_TYPES,

  async createTables(db: Kysely<any>, schema: string) {
    await db.schema
      .withSchema(schema)
      .createTable("image_versions")
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("version", "text", (c) => c.notNull())
      .addColumn("digest", "text", (c) => c.notNull())
      .addColumn("format", "text", (c) => c.notNull())
      .addColumn("os_family", "text", (c) => c.notNull())
      .addColumn("guest_init", "text", (c) => c.notNull())
      .addColumn("content", "jsonb", (c) => c.notNull())
      .addColumn("registered_at", "timestamptz", (c) => c.notNull())
      .addColumn("stream_position", "integer", (c) => c.notNull())
      .addColumn("position", "text", (c) => c.notNull())
      .addPrimaryKeyConstraint("image_versions_pk", ["name", "version"])
      .execute();
  },

  async handle(db, event: RecordedEvent) {
    if (!event.streamId.startsWith(MASKIN_IMAGE_STREAM_PREFIX) || event.type !== "ImageVersionRegistered") return;
    const data = imageEventSchemas.ImageVersionRegistered.schema.parse(event.data);
    await db
      .insertInto("image_versions")
      .values({
        name: data.name,
        version: data.version,
        digest: data.content.digest,
        format: data.content.format,
        os_family: data.content.osFamily,
        guest_init: data.content.guestInit,
        content: JSON.stringify(data.content),
        registered_at: new Date(data.at),
        stream_position: event.streamPosition,
        position: formatPosition(event),
      })
      // A version is registered once (the aggregate refuses other content); a replay writes the same row.
      .onConflict((oc) => oc.columns(["name", "version"]).doNothing())
      .execute();
  },
});
