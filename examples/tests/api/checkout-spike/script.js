import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:18080';
const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${__ENV.API_TOKEN || 'demo'}` };

export default function () {
  const body = JSON.stringify({ item: 1 + (__ITER % 50), quantity: 1 });
  const res = http.post(`${BASE}/api/checkout`, body, { headers, tags: { name: 'checkout' } });
  check(res, { 'order accepted': (r) => r.status === 201 || r.status === 200 });
}
