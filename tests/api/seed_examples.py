"""The media-upload client examples of seeds 000 and 001, as the documentation prints them (the text
extraction lost the Python indentation, restored here). Tests run them against the live app after
replacing only SEED_HOST with its URL, and, in seed 000's curl example, the placeholder for the data.
Each reads `image.jpg` from the directory it runs in."""

from __future__ import annotations

SEED_HOST = "https://api.approvedcontact.com"
SEED_000_DATA_PLACEHOLDER = "BASE64_ENCODED_IMAGE_DATA"

# Seed 000, "MMS Messages", Step 1: Upload Media.
SEED_000_CURL = """\
curl -X POST https://api.approvedcontact.com/api/v1/media \\
-u "your-email@example.com:your-password" \\
-H "Content-Type: application/json" \\
-d '{
"phoneNumberId": "00000000-0000-0000-0000-000000000000",
"fileName": "product-image.jpg",
"mimeType": "image/jpeg",
"content": "BASE64_ENCODED_IMAGE_DATA"
}'
"""

# Seed 001, "Example: Upload an Image": curl.
SEED_001_CURL = """\
# Base64 encode the image file data
BASE64_IMAGE=$(base64 -i image.jpg)
curl -X POST https://api.approvedcontact.com/api/v1/media \\
-u "your-email@example.com:your-password" \\
-H "Content-Type: application/json" \\
-d "{
\\"phoneNumber\\": \\"+15551234567\\",
\\"fileName\\": \\"product-image.jpg\\",
\\"contentType\\": \\"image/jpeg\\",
\\"data\\": \\"$BASE64_IMAGE\\",
\\"tenantId\\": \\"00000000-0000-0000-0000-000000000000\\"
}"
"""

# Seed 001: Python.
SEED_001_PYTHON = """\
import requests
import base64
# Read and convert file to byte array
with open('image.jpg', 'rb') as f:
    file_bytes = f.read()
credentials = base64.b64encode(b'your-email@example.com:your-password').decode()
response = requests.post(
    'https://api.approvedcontact.com/api/v1/media',
    headers={'Authorization': f'Basic {credentials}'},
    json={
        'phoneNumber': '+15551234567',
        'fileName': 'product-image.jpg',
        'contentType': 'image/jpeg',
        'data': list(file_bytes), # Convert bytes to array of integers
        'tenantId': '00000000-0000-0000-0000-000000000000'
    }
)
media_url = response.json()['uri']
print(f'Uploaded: {media_url}')
"""

# Seed 001: Node.
SEED_001_NODE = """\
const fs = require('fs');
const axios = require('axios');
// Read file as buffer and convert to byte array
const fileBuffer = fs.readFileSync('image.jpg');
const byteArray = Array.from(fileBuffer);
const credentials = Buffer.from('your-email@example.com:your-password').toString('base64');
axios.post(
'https://api.approvedcontact.com/api/v1/media',
{
phoneNumber: '+15551234567',
fileName: 'product-image.jpg',
contentType: 'image/jpeg',
data: byteArray,
tenantId: '00000000-0000-0000-0000-000000000000'
},
{
headers: { 'Authorization': `Basic ${credentials}` }
}
)
.then(response => {
console.log(`Uploaded: ${response.data.uri}`);
});
"""
