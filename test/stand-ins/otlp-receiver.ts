import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';

/**
 * The part of OpenTelemetry's OTLP trace protocol (opentelemetry-proto, `collector/trace/v1` and
 * `trace/v1`, `common/v1`, `resource/v1`) a receiver needs to read an export: same messages, same
 * field numbers; links and scope attributes left out (protobuf skips unknown fields).
 */
const OTLP_TRACE_PROTO = `
syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message InstrumentationScope { string name = 1; string version = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  fixed32 flags = 16; string name = 5; int32 kind = 6;
  fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; uint32 dropped_attributes_count = 10;
  repeated Event events = 11; uint32 dropped_events_count = 12; Status status = 15;
}
message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; }
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value {
    string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
    ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`;

const ExportTraceServiceRequest = protobuf
  .parse(OTLP_TRACE_PROTO, { keepCase: false })
  .root.lookupType('ExportTraceServiceRequest');

const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'] as const;
const STATUSES = ['unset', 'ok', 'error'] as const;

export type AttributeValue = string | number | boolean | AttributeValue[] | undefined;

/** One span as the receiver decoded it; the same shape from protobuf and from JSON. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Absent for a root span. */
  parentSpanId?: string;
  name: string;
  kind: (typeof KINDS)[number];
  attributes: Record<string, AttributeValue>;
  status: (typeof STATUSES)[number];
  statusMessage: string;
  durationMs: number;
  events: { name: string; attributes: Record<string, AttributeValue> }[];
  /** The resource attributes of its batch (service.name, …). */
  resource: Record<string, AttributeValue>;
}

export interface OtlpReceiver {
  /** http://127.0.0.1:PORT, the OTEL_EXPORTER_OTLP_ENDPOINT form. */
  origin: string;
  /** Every export body exactly as received, for scanning every byte. */
  bodies: Buffer[];
  /** The Content-Type of each export. */
  contentTypes: string[];
  /** Every span received, in order. */
  spans: ReceivedSpan[];
  /** Resolves with the spans once `done` holds for them; rejects after `timeoutMs`. */
  waitFor(done: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Forgets everything received so far. */
  clear(): void;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

function hex(value: unknown): string {
  if (typeof value === 'string') return value.toLowerCase();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return '';
}

/** An AnyValue of either encoding: protobufjs's objects and OTLP/JSON share the camelCase names. */
function valueOf(any: Json | undefined): AttributeValue {
  if (!any) return undefined;
  if (any.stringValue !== undefined) return String(any.stringValue);
  if (any.boolValue !== undefined) return Boolean(any.boolValue);
  if (any.intValue !== undefined) return Number(any.intValue);
  if (any.doubleValue !== undefined) return Number(any.doubleValue);
  if (any.arrayValue !== undefined) {
    return ((any.arrayValue as Json).values as Json[] | undefined)?.map(valueOf) ?? [];
  }
  return undefined;
}

function attributesOf(list: unknown): Record<string, AttributeValue> {
  const result: Record<string, AttributeValue> = {};
  for (const entry of (list as Json[] | undefined) ?? []) {
    result[String(entry.key)] = valueOf(entry.value as Json | undefined);
  }
  return result;
}

function spansOf(request: Json): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of (request.resourceSpans as Json[] | undefined) ?? []) {
    const resource = attributesOf((resourceSpans.resource as Json | undefined)?.attributes);
    for (const scopeSpans of (resourceSpans.scopeSpans as Json[] | undefined) ?? []) {
      for (const span of (scopeSpans.spans as Json[] | undefined) ?? []) {
        const parent = hex(span.parentSpanId);
        const status = (span.status as Json | undefined) ?? {};
        spans.push({
          traceId: hex(span.traceId),
          spanId: hex(span.spanId),
          ...(parent ? { parentSpanId: parent } : {}),
          name: String(span.name ?? ''),
          kind: KINDS[Number(span.kind ?? 0)] ?? 'unspecified',
          attributes: attributesOf(span.attributes),
          status: STATUSES[Number(status.code ?? 0)] ?? 'unset',
          statusMessage: String(status.message ?? ''),
          durationMs:
            Number(
              BigInt(String(span.endTimeUnixNano ?? 0)) -
                BigInt(String(span.startTimeUnixNano ?? 0)),
            ) / 1e6,
          events: ((span.events as Json[] | undefined) ?? []).map((event) => ({
            name: String(event.name ?? ''),
            attributes: attributesOf(event.attributes),
          })),
          resource,
        });
      }
    }
  }
  return spans;
}

/** Decodes one export body of either OTLP/HTTP encoding. */
export function decodeExport(contentType: string, body: Buffer): ReceivedSpan[] {
  if (contentType.startsWith('application/json')) {
    return spansOf(JSON.parse(body.toString('utf8')) as Json);
  }
  const message = ExportTraceServiceRequest.decode(body);
  return spansOf(ExportTraceServiceRequest.toObject(message, { longs: String }) as Json);
}

/**
 * An OTLP/HTTP trace receiver on 127.0.0.1, a stand-in for an OpenTelemetry collector:
 * `POST /v1/traces` in `application/x-protobuf` or `application/json`, answered with an empty
 * success in the same encoding. `onSpans` sees each export's spans as they arrive.
 */
export async function startOtlpReceiver(
  options: { port?: number; onSpans?: (spans: ReceivedSpan[]) => void } = {},
): Promise<OtlpReceiver> {
  const bodies: Buffer[] = [];
  const contentTypes: string[] = [];
  const spans: ReceivedSpan[] = [];
  const waiters = new Set<() => void>();

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const contentType = req.headers['content-type'] ?? '';
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    let received: ReceivedSpan[];
    try {
      received = decodeExport(contentType, body);
    } catch {
      res.writeHead(400).end();
      return;
    }
    bodies.push(body);
    contentTypes.push(contentType);
    spans.push(...received);
    options.onSpans?.(received);
    for (const wake of waiters) wake();
    const json = contentType.startsWith('application/json');
    res.writeHead(200, { 'Content-Type': json ? 'application/json' : 'application/x-protobuf' });
    res.end(json ? '{}' : '');
  });
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    origin: `http://127.0.0.1:${port}`,
    bodies,
    contentTypes,
    spans,
    waitFor: (done, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (!done(spans)) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(spans);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`the receiver got ${spans.length} spans, not the ones expected`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    clear: () => {
      bodies.length = 0;
      contentTypes.length = 0;
      spans.length = 0;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
