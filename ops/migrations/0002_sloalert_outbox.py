# SLO alert webhook outbox (issue 7: durable alert delivery).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ops', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='SloAlert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event', models.CharField(max_length=16)),
                ('body', models.JSONField()),
                ('state', models.CharField(choices=[('pending', 'Pending'), ('sent', 'Sent')], default='pending', max_length=8)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('last_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('last_error', models.CharField(blank=True, max_length=200)),
                ('sent_at', models.DateTimeField(blank=True, null=True)),
                ('breach', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alerts', to='ops.slobreach')),
            ],
            options={
                'indexes': [models.Index(fields=['state', 'created_at'], name='slo_alert_pending')],
                'constraints': [models.UniqueConstraint(fields=('breach', 'event'), name='slo_alert_once_per_change')],
            },
        ),
    ]
