import http from 'k6/http';
import { check } from 'k6';

export const options = {
  stages: [
    { duration: '5s', target: ${VUS} },
    { duration: '${DURATION}', target: ${VUS} },
    { duration: '5s', target: 0 },
  ],
};

export default function () {
  const res = http.get('${TARGET_URL}${PATH}', { tags: { name: '${PATH}' } });
  check(res, { 'status is 2xx': (r) => r.status >= 200 && r.status < 300 });
}
