-- Storage: private buckets `videos` (<user_id>/<booking_id>.mp4) and `media` (<user_id>/media/...).
-- The bucket's allowed MIME types also catch an upload sent with the client's text/plain default.

insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
values ('videos', 'videos', false, null, array['video/mp4']),
       ('media', 'media', false, 262144000, array['video/mp4', 'video/x-matroska', 'image/png'])
on conflict (id) do update set public = excluded.public, allowed_mime_types = excluded.allowed_mime_types,
    file_size_limit = excluded.file_size_limit;

drop policy if exists "ezrec videos: owner reads" on storage.objects;
create policy "ezrec videos: owner reads" on storage.objects
    for select to authenticated
    using (bucket_id = 'videos' and (storage.foldername(name))[1] = (select auth.uid())::text);

drop policy if exists "ezrec media: owner reads" on storage.objects;
create policy "ezrec media: owner reads" on storage.objects
    for select to authenticated
    using (bucket_id = 'media' and (storage.foldername(name))[1] = (select auth.uid())::text
           and (storage.foldername(name))[2] = 'media');

-- No insert/update/delete policies: only the service role (which bypasses RLS) writes objects.
