import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:18080';

export default function () {
  const list = http.get(`${BASE}/api/items?page=${1 + (__ITER % 5)}`, { tags: { name: 'list' } });
  check(list, { 'list is 200': (r) => r.status === 200 });
  const item = http.get(`${BASE}/api/items/${1 + (__VU % 50)}`, { tags: { name: 'item' } });
  check(item, { 'item is 200': (r) => r.status === 200 });
  sleep(0.2);
}
