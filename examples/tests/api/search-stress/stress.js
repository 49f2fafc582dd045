import http from 'k6/http';
import { check } from 'k6';
import { Trend } from 'k6/metrics';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:18080';
const results = new Trend('search_results');
const terms = ['shoes', 'coat', 'hat', 'scarf', 'boots', 'gloves'];

export default function () {
  const q = terms[__ITER % terms.length];
  const res = http.get(`${BASE}/api/search?q=${q}`, { tags: { name: 'search' } });
  check(res, { 'search is 200': (r) => r.status === 200 });
  if (res.status === 200) {
    results.add(res.json('count') || 0);
  }
}
