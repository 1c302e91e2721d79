import request from 'supertest';

/** The value of one series from the app's /metrics, e.g. `upstream_circuit_state{upstream="cardscan",state="open"}`; undefined when absent. */
export async function metricValue(url: string, series: string): Promise<number | undefined> {
  const res = await request(url).get('/metrics');
  const line = res.text.split('\n').find((each) => each.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

export const circuitState = (upstream: string, state: string) =>
  `upstream_circuit_state{upstream="${upstream}",state="${state}"}`;
