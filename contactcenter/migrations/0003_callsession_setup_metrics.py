# Call-setup facts of a video call session (issue 7 metrics): decided once per visit.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('contactcenter', '0002_videovisit_callsession_visitattachment_visitmessage_and_more'),
    ]

    operations = [
        migrations.AddField(
            model_name='callsession',
            name='setup_result',
            field=models.CharField(blank=True, choices=[('', 'Undecided'), ('success', 'Success'), ('failure', 'Failure')], default='', max_length=8),
        ),
        migrations.AddField(
            model_name='callsession',
            name='setup_decided_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='callsession',
            name='ice_failed_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='callsession',
            name='nurse_media_path',
            field=models.CharField(blank=True, default='', max_length=8),
        ),
        migrations.AddField(
            model_name='callsession',
            name='patient_media_path',
            field=models.CharField(blank=True, default='', max_length=8),
        ),
    ]
