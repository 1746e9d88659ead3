import { describe, expect, it } from 'vitest';

import { initials } from './Avatar';
import { formatSize, messagePreview, typingText } from './format';

describe('what the screens say', () => {
  it('names who is typing', () => {
    expect(typingText([])).toBe('');
    expect(typingText(['bob'])).toBe('bob is typing…');
    expect(typingText(['bob', 'carol'])).toBe('bob and carol are typing…');
    expect(typingText(['a', 'b', 'c'])).toBe('3 people are typing…');
  });

  it('previews the last message in the room list', () => {
    const event = (sender: string, content: Record<string, unknown>) => ({ event_id: '$1', type: 'm.room.message', sender, origin_server_ts: 1, content });
    expect(messagePreview(event('@me:x', { msgtype: 'm.text', body: 'hi' }), '@me:x')).toBe('You: hi');
    expect(messagePreview(event('@bob:x', { msgtype: 'm.image', body: 'cat.png' }), '@me:x')).toBe('Photo: cat.png');
    expect(messagePreview(event('@bob:x', { msgtype: 'm.file', body: 'a.pdf' }), '@me:x')).toBe('File: a.pdf');
  });

  it('sizes files and picks avatar initials', () => {
    expect(formatSize(512)).toBe('512 B');
    expect(formatSize(105_472)).toBe('103.0 KB');
    expect(formatSize(5 * 1024 * 1024)).toBe('5.0 MB');
    expect(initials('Tea & biscuits', true)).toBe('TB');
    expect(initials('@bob:localhost', false)).toBe('B');
    expect(initials('élan vital', true)).toBe('ÉV');
    expect(initials('', false)).toBe('?');
  });
});
