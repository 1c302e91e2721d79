/**
 * `npm run local -- --print-spans`: an OTLP/HTTP receiver on 127.0.0.1 that prints every span the
 * broker exports, one line each, so the traces of a request can be read without a collector.
 */
import { startOtlpReceiver, type ReceivedSpan } from '../test/stand-ins/otlp-receiver';

function line(span: ReceivedSpan): string {
  const parent = span.parentSpanId ? ` parent=${span.parentSpanId}` : '';
  return (
    `span ${span.kind.padEnd(6)} ${span.name}  ${span.durationMs.toFixed(1)} ms  status=${span.status}` +
    `  trace=${span.traceId} span=${span.spanId}${parent}\n` +
    `     ${JSON.stringify(span.attributes)}\n`
  );
}

export interface SpanPrinter {
  /** The broker variables that send its spans here (over any OTEL_* already set). */
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function startSpanPrinter(write: (text: string) => void): Promise<SpanPrinter> {
  const receiver = await startOtlpReceiver({
    onSpans: (spans) => write(spans.map(line).join('')),
  });
  return {
    env: {
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.origin}/v1/traces`,
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '200',
    },
    close: () => receiver.close(),
  };
}
