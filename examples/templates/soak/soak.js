import http from 'k6/http';
import { check } from 'k6';

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: ${RATE},
      timeUnit: '1s',
      duration: '${DURATION}',
      preAllocatedVUs: 10,
      maxVUs: 50,
    },
  },
};

export default function () {
  const started = Date.now();
  const res = http.get('${TARGET_URL}/health');
  check(res, { healthy: (r) => r.status === 200 });
  // A literal template string survives rendering through the $${ escape:
  console.debug(`health took $${Date.now() - started} ms`);
}
